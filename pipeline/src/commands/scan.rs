//! `portcullis scan`: one-shot scan of files and directories.
//!
//! Exit status: 0 nothing found, 1 something infected (even if other files
//! could not be scanned: a detection is the news), 2 an error and nothing
//! infected.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use portcullis_actors::scanner::{ArchiveScan, ScanEngine, ScanLimits, ScanOutcome};
use portcullis_schemas::{SkipReason, Verdict, VerdictClass};
use serde_json::json;

use crate::cli::{ScanArgs, ScanFormat};
use crate::rules::load_ruleset;

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let timeout = humantime::parse_duration(&args.timeout)
        .with_context(|| format!("--timeout: `{}` is not a duration", args.timeout))?;
    let ruleset = Arc::new(load_ruleset(args.rules.as_deref())?);
    let limits = ScanLimits {
        max_size: args.max_size_mb.saturating_mul(1024 * 1024),
        timeout,
        archives: ArchiveScan {
            mode: args.archives.into(),
            ..ArchiveScan::default()
        },
    };
    let mut engine = ScanEngine::new(ruleset, limits);
    let mut infected = 0usize;
    let mut errors = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut report = |path: &Path,
                      outcome: Option<ScanOutcome>,
                      walk_error: Option<String>|
     -> std::io::Result<()> {
        let line = match (&outcome, &walk_error) {
            (_, Some(e)) => {
                errors += 1;
                match args.format {
                    ScanFormat::Text => format!("{}: error: {e}", path.display()),
                    ScanFormat::Jsonl => json!({ "path": path.display().to_string(), "verdict": "error", "error": e }).to_string(),
                }
            }
            (Some(o), None) => {
                match o.verdict.class() {
                    VerdictClass::Infected => infected += 1,
                    VerdictClass::Error => errors += 1,
                    _ => {}
                }
                format_outcome(path, o, args.format)
            }
            (None, None) => return Ok(()),
        };
        writeln!(out, "{line}")
    };
    for root in &args.paths {
        let mut files = Vec::new();
        let mut walk_errors = Vec::new();
        walk(root, &mut files, &mut walk_errors);
        for (p, e) in walk_errors {
            report(&p, None, Some(e))?;
        }
        for f in files {
            let outcome = engine.scan_path(&f);
            report(&f, Some(outcome), None)?;
        }
    }
    Ok(if infected > 0 {
        ExitCode::from(1)
    } else if errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn format_outcome(path: &Path, o: &ScanOutcome, format: ScanFormat) -> String {
    let p = path.display().to_string();
    let sha = o.sha256.map(hex::encode);
    match format {
        // An archive member is named after its archive, the way the
        // journal and the SIEM exports name it: `a.tar.gz!dir/evil.sh`.
        ScanFormat::Text => match (&o.verdict, o.verdict.matches()) {
            (Verdict::InfectedMember { member, .. }, Some(m)) => {
                format!("{p}!{member}: INFECTED {}", crate::render::rule_list(m))
            }
            (_, Some(m)) => format!("{p}: INFECTED {}", crate::render::rule_list(m)),
            (v, None) => format!("{p}: {}", crate::render::verdict_text(v)),
        },
        ScanFormat::Jsonl => {
            let mut v = json!({
                "path": p,
                "verdict": o.verdict.class().as_str(),
                "size": o.size,
                "sha256": sha,
                "ruleset": o.ruleset.0,
                "duration_us": u64::try_from(o.duration.as_micros()).unwrap_or(u64::MAX),
            });
            if let Some(matches) = o.verdict.matches() {
                v["rules"] = json!(matches
                    .iter()
                    .map(|m| json!({ "rule": m.rule, "namespace": m.namespace, "tags": m.tags }))
                    .collect::<Vec<_>>());
            }
            if let Some(member) = o.verdict.member() {
                v["member"] = json!(member);
            }
            match &o.verdict {
                Verdict::Skipped {
                    reason:
                        SkipReason::ArchiveLimit {
                            limit,
                            value,
                            member,
                        },
                } => {
                    v["reason"] = json!("archive_limit");
                    v["limit"] = json!(limit);
                    v["limit_value"] = json!(value);
                    v["member"] = json!(member);
                }
                Verdict::Skipped { reason } => v["reason"] = json!(reason.as_str()),
                Verdict::Error { message } => v["error"] = json!(message),
                _ => {}
            }
            v.to_string()
        }
    }
}

/// Regular files under `root` (itself if it is a file), in name order.
/// Symlinks are not followed; what cannot be read is reported.
fn walk(root: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<(PathBuf, String)>) {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => {
            errors.push((root.to_path_buf(), e.to_string()));
            return;
        }
    };
    if meta.is_file() {
        files.push(root.to_path_buf());
    } else if meta.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(root) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push((root.to_path_buf(), e.to_string()));
                return;
            }
        };
        entries.sort();
        for e in entries {
            walk(&e, files, errors);
        }
    }
}
