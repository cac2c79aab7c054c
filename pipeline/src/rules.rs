//! The ruleset an agent or a one-shot scan uses: a directory of rule files
//! (and hash lists), or the built-in ruleset (the files of `rules/`
//! compiled into the binary); and its reloads (SIGHUP, or a watch of the
//! directory), see docs/rules.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use portcullis_actors::scanner::{source_files, RulesError, Ruleset};
use portcullis_schemas::{EventBody, RulesLoaded, RulesRejected, RulesetVersion};
use portcullis_telemetry::catalog;

/// The files of the repository's `rules/` directory, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    ("eicar.yar", include_str!("../../rules/eicar.yar")),
    ("examples.yar", include_str!("../../rules/examples.yar")),
];

/// Compiles `dir`, or the built-in ruleset when `dir` is `None`.
pub fn load_ruleset(dir: Option<&Path>) -> anyhow::Result<Ruleset> {
    match dir {
        Some(d) => Ok(Ruleset::compile_dir(d)?),
        None => {
            let sources: Vec<(PathBuf, String)> = BUILTIN
                .iter()
                .map(|(n, s)| (PathBuf::from(n), (*s).to_owned()))
                .collect();
            Ruleset::compile_sources(Path::new("<built-in>"), &sources)
                .context("the built-in ruleset")
        }
    }
}

// ------------------------------------------------------------------ reloads

/// What a reload found.
#[derive(Debug)]
pub enum Reload {
    /// A new ruleset compiled; the caller puts it in force.
    Loaded {
        ruleset: Arc<Ruleset>,
        /// Reading and compiling (off the async executor).
        compile: Duration,
    },
    /// The files compile to the ruleset in force: nothing to do.
    Unchanged,
    /// The files do not load; the ruleset in force stays.
    Rejected(RulesRejected),
}

/// Compiles `dir` on a blocking thread (never on the executor, so no open
/// waits on a compile) and compares the result with `current`.
pub async fn compile(dir: PathBuf, current: &Arc<Ruleset>) -> Reload {
    let started = Instant::now();
    let compiled = actix_rt::task::spawn_blocking(move || Ruleset::compile_dir(&dir)).await;
    let kept = current.version().clone();
    match compiled {
        Ok(Ok(ruleset)) if ruleset.version() == current.version() => Reload::Unchanged,
        Ok(Ok(ruleset)) => Reload::Loaded {
            ruleset: Arc::new(ruleset),
            compile: started.elapsed(),
        },
        Ok(Err(e)) => Reload::Rejected(rejected(&e, kept)),
        Err(e) => Reload::Rejected(RulesRejected {
            kept,
            error: format!("the compile thread failed: {e}"),
            file: None,
            line: None,
            column: None,
        }),
    }
}

/// The `RulesRejected` event of a load error.
pub fn rejected(e: &RulesError, kept: RulesetVersion) -> RulesRejected {
    let num = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
    let (file, line, column) = match e {
        RulesError::Compile {
            file, line, column, ..
        } => (Some(file), num(*line), num(*column)),
        RulesError::HashList { file, line, .. } => (Some(file), num(*line), None),
        RulesError::ReadFile { file, .. } => (Some(file), None, None),
        RulesError::ReadDir { dir, .. } | RulesError::NoRuleFiles { dir } => {
            (Some(dir), None, None)
        }
    };
    RulesRejected {
        kept,
        error: e.to_string(),
        file: file.map(|f| f.display().to_string()),
        line,
        column,
    }
}

/// One file of a [`fingerprint`]: path, size, mtime and ctime (s, ns),
/// inode. The ctime catches a same-size rewrite that kept its mtime
/// (`cp -p`, `rsync -t`): user space cannot set it.
pub type FileStamp = (PathBuf, u64, (i64, i64), (i64, i64), u64);

/// What changes when a rules directory is edited: the names, sizes,
/// modification times and inodes of its rule files and hash lists.
/// `None` when the directory cannot be listed (a reload then says why).
pub fn fingerprint(dir: &Path) -> Option<Vec<FileStamp>> {
    use std::os::unix::fs::MetadataExt as _;
    let found = source_files(dir).ok()?;
    let mut out = Vec::new();
    for path in found.rules.into_iter().chain(found.hash_lists) {
        let m = std::fs::metadata(&path).ok()?;
        out.push((
            path,
            m.len(),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
            m.ino(),
        ));
    }
    Some(out)
}

/// Where a reloaded ruleset goes and what is said about it.
pub trait ReloadTarget {
    /// Puts `ruleset` in force; `false` when it was not taken (stopping).
    fn apply(&mut self, ruleset: Arc<Ruleset>) -> futures::future::LocalBoxFuture<'_, bool>;
    /// Journals an outcome (the agent); a scanner service only logs.
    fn record(&mut self, _body: EventBody) {}
}

/// The SIGHUP stream of the reloads. Installed at once, before anything
/// slow happens at start, and even without a rules directory: SIGHUP's
/// default action would kill the process (a `systemctl reload` right after
/// the start, for one). Must be called inside the actix System.
pub fn hangups() -> anyhow::Result<actix_rt::signal::unix::Signal> {
    use actix_rt::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).context("installing the SIGHUP handler")
}

/// Reloads the rules of `dir` at every SIGHUP and, with `watch`, when its
/// files change (polled at that interval; a change is loaded once two
/// polls in a row agree). Runs until the task is aborted or the actix
/// System stops. `current` is the ruleset in force at the start.
pub async fn reload_loop(
    mut hup: actix_rt::signal::unix::Signal,
    dir: Option<PathBuf>,
    watch: Option<Duration>,
    mut current: Arc<Ruleset>,
    mut target: impl ReloadTarget,
) -> anyhow::Result<()> {
    let mut tick = watch.map(|every| {
        let mut t = actix_rt::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // Listing and stat-ing the directory is blocking I/O (a hung network
    // file system): never on the executor that answers opens.
    let stamp = |dir: Option<PathBuf>| async move {
        match dir {
            Some(d) => actix_rt::task::spawn_blocking(move || fingerprint(&d))
                .await
                .ok()
                .flatten(),
            None => None,
        }
    };
    let mut loaded = stamp(dir.clone()).await;
    let mut seen = loaded.clone();
    loop {
        let why = tokio::select! {
            Some(()) = hup.recv() => "SIGHUP",
            _ = async {
                match tick.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => "the rules directory changed",
        };
        let Some(dir) = dir.clone() else {
            tracing::warn!("{why}: the built-in ruleset has nothing to reload (set scan.rules)");
            continue;
        };
        if why != "SIGHUP" {
            let now = stamp(Some(dir.clone())).await;
            let settled = now == seen;
            seen = now;
            if !settled || seen == loaded {
                continue;
            }
        }
        loaded = stamp(Some(dir.clone())).await;
        seen = loaded.clone();
        let outcome = compile(dir.clone(), &current).await;
        let result = match outcome {
            Reload::Loaded { ruleset, compile } => {
                let started = Instant::now();
                if !target.apply(ruleset.clone()).await {
                    tracing::info!(trigger = why, "rules not reloaded: stopping");
                    continue;
                }
                metrics::gauge!(catalog::RULES_INFO.name, "ruleset" => current.version().to_string())
                    .set(0.0);
                crate::agent::ruleset_metrics(&ruleset);
                tracing::info!(
                    trigger = why,
                    from = %current.version(),
                    ruleset = %ruleset.version(),
                    rules = ruleset.rule_count(),
                    compile_ms = u64::try_from(compile.as_millis()).unwrap_or(u64::MAX),
                    swap_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "rules reloaded"
                );
                target.record(EventBody::RulesLoaded(RulesLoaded {
                    ruleset: ruleset.version().clone(),
                    rules: ruleset.rule_count(),
                    files: ruleset.files().to_vec(),
                }));
                current = ruleset;
                "loaded"
            }
            Reload::Unchanged => {
                tracing::info!(trigger = why, ruleset = %current.version(), "rules reload: unchanged");
                "unchanged"
            }
            Reload::Rejected(rejected) => {
                tracing::error!(
                    trigger = why,
                    kept = %rejected.kept,
                    "rules reload refused, the rules in force stay: {}",
                    rejected.error
                );
                target.record(EventBody::RulesRejected(rejected));
                "rejected"
            }
        };
        metrics::counter!(catalog::RULES_RELOADS.name, "result" => result).increment(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_names_the_place_of_the_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yar"), "rule a {\n  condition: nope\n}\n").unwrap();
        let err = Ruleset::compile_dir(dir.path()).unwrap_err();
        let r = rejected(&err, RulesetVersion("kept".into()));
        assert_eq!(r.kept.0, "kept");
        assert_eq!((r.line, r.column), (Some(2), Some(14)), "{r:?}");
        assert!(r.file.as_deref().unwrap().ends_with("/a.yar"));
        assert!(r.error.contains("a.yar:2:14: error"), "{}", r.error);

        std::fs::write(dir.path().join("a.yar"), "rule a { condition: true }").unwrap();
        std::fs::write(dir.path().join("x.known-bad.sha256"), "\n\nzz\n").unwrap();
        let err = Ruleset::compile_dir(dir.path()).unwrap_err();
        let r = rejected(&err, RulesetVersion("kept".into()));
        assert_eq!((r.line, r.column), (Some(3), None));
        assert!(r.file.unwrap().ends_with("x.known-bad.sha256"));
    }

    #[test]
    fn the_fingerprint_follows_rule_files_and_lists_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(fingerprint(p), None, "no rule file");
        std::fs::write(p.join("a.yar"), "rule a { condition: true }").unwrap();
        let first = fingerprint(p).unwrap();
        std::fs::write(p.join("README"), "not a rule").unwrap();
        assert_eq!(fingerprint(p).unwrap(), first, "other files do not count");
        std::fs::write(p.join("v.trusted.sha256"), "").unwrap();
        let with_list = fingerprint(p).unwrap();
        assert_ne!(with_list, first);
        std::fs::write(p.join("a.yar"), "rule a { condition: false }").unwrap();
        assert_ne!(fingerprint(p).unwrap(), with_list, "an edit counts");
    }
}
