//! What answers the openers of the node and cluster scenarios: nothing
//! (baseline), `portcullis-floor` (the floor), or `portcullis run` (the
//! agent, in Enforce mode). Each runs as a child process of the tool, in
//! the tool's private mount namespace, marking only the run's tmpfs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_actors::journal::JournalStore;

use crate::error::{Error, IoContext, Result};
use crate::process::{die_with_parent, spawn_ready, stop_child, usage_of, Usage};
use crate::report::{Tally, TargetName};

/// Bound on a responder's start (the agent compiles the ruleset first).
const READY_BOUND: Duration = Duration::from_secs(60);

/// Bound on a responder's stop before SIGKILL (the agent answers all
/// pending decisions and commits its journal first).
const STOP_BOUND: Duration = Duration::from_secs(30);

/// How the responders of a run are set up.
#[derive(Debug, Clone)]
pub struct ResponderSettings {
    /// The agent's decision deadline.
    pub deadline: Duration,
    /// A `[kafka]` section for the agent (cluster scenario), verbatim.
    pub kafka_section: Option<String>,
    /// Scanner threads of the agent (0 = one per core).
    pub scan_threads: usize,
    /// The floor never answers (`--stall`): tests the watchdog.
    pub floor_stalls: bool,
    /// The `[telemetry]` section of the telemetry target, verbatim.
    pub telemetry_section: Option<String>,
}

/// The agent's configuration file: Enforce mode, block-only actions (an
/// infected file stays, so the warm phase meets it again), the deadline
/// and a scan timeout below it.
/// `telemetry`: the `[telemetry]` section of the telemetry target.
pub fn agent_config(s: &ResponderSettings, quarantine: &Path, telemetry: Option<&str>) -> String {
    let deadline_ms = s.deadline.as_millis().max(2);
    // The agent requires scan.timeout < enforcer.deadline.
    let scan_ms = (deadline_ms * 4 / 5).max(1);
    let mut c = format!(
        r#"# portcullis-loadtest: the agent under test
node_id = "loadtest"
interceptor_mode = "enforce"

[scan]
timeout = "{scan_ms}ms"
threads = {threads}

[enforcer]
deadline = "{deadline_ms}ms"

[actions]
first = "block"
second = "block"
quarantine_dir = "{quarantine}"
"#,
        threads = s.scan_threads,
        quarantine = quarantine.display(),
    );
    if let Some(k) = &s.kafka_section {
        c.push('\n');
        c.push_str(k);
    }
    if let Some(t) = telemetry {
        c.push_str(t);
    }
    c
}

/// A responder that runs (or `None` for the baseline).
#[derive(Debug)]
pub struct Running {
    pub target: TargetName,
    child: Option<Child>,
    log: PathBuf,
    journal: Option<PathBuf>,
}

/// Where the binaries of the responders are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub portcullis: PathBuf,
    pub floor: PathBuf,
}

/// A binary beside this executable (cargo puts every binary of the
/// workspace in the same directory).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().ctx(|| "locating this executable".to_string())?;
    Ok(exe.with_file_name(name))
}

impl Binaries {
    /// Beside this executable unless given.
    pub fn locate(portcullis: Option<PathBuf>, floor: Option<PathBuf>) -> Result<Self> {
        let b = Self {
            portcullis: portcullis.map_or_else(|| sibling("portcullis"), Ok)?,
            floor: floor.map_or_else(|| sibling("portcullis-floor"), Ok)?,
        };
        for (flag, p) in [("portcullis", &b.portcullis), ("floor", &b.floor)] {
            if !p.is_file() {
                return Err(Error::flag(
                    flag,
                    format!(
                        "{} not found (build it: cargo build --release -p portcullis-pipeline -p portcullis-loadtest)",
                        p.display()
                    ),
                ));
            }
        }
        Ok(b)
    }
}

/// Starts the responder of `target` on `mount`; returns once it protects
/// the mount.
pub fn start(
    target: TargetName,
    bins: &Binaries,
    mount: &Path,
    work: &Path,
    agent: &ResponderSettings,
) -> Result<Running> {
    let log = work.join(format!("{target}.log"));
    let ready = work.join(format!("{target}.ready"));
    let stderr =
        || -> Result<File> { File::create(&log).ctx(|| format!("creating {}", log.display())) };
    let (cmd, journal) = match target {
        TargetName::Baseline => {
            return Ok(Running {
                target,
                child: None,
                log,
                journal: None,
            })
        }
        TargetName::Floor => {
            // With --cache: kernel ignore marks like the agent's, so warm
            // opens compare like with like.
            let mut cmd = Command::new(&bins.floor);
            cmd.arg(if agent.floor_stalls {
                "--stall"
            } else {
                "--cache"
            })
            .arg("--protect")
            .arg(mount)
            .arg("--ready-file")
            .arg(&ready);
            (cmd, None)
        }
        TargetName::KafkaFloor => {
            // The floor with a Kafka round trip before each answer.
            let Some(section) = &agent.kafka_section else {
                return Err(Error::flag("scenario", "the kafka floor needs a broker"));
            };
            let config = work.join("kafka-floor.toml");
            std::fs::write(&config, section).ctx(|| format!("writing {}", config.display()))?;
            let mut cmd = Command::new(&bins.floor);
            cmd.arg("--cache")
                .arg("--kafka")
                .arg(&config)
                .arg("--protect")
                .arg(mount)
                .arg("--ready-file")
                .arg(&ready);
            (cmd, None)
        }
        TargetName::Portcullis | TargetName::PortcullisTelemetry => {
            // Each agent target has its own journal and quarantine.
            let config = work.join(format!("{target}.toml"));
            let journal = work.join(format!("{target}.journal"));
            let quarantine = work.join(format!("{target}.quarantine"));
            let telemetry = agent
                .telemetry_section
                .as_deref()
                .filter(|_| target == TargetName::PortcullisTelemetry);
            std::fs::write(&config, agent_config(agent, &quarantine, telemetry))
                .ctx(|| format!("writing {}", config.display()))?;
            let mut cmd = Command::new(&bins.portcullis);
            cmd.args(["--log", "warn", "run", "--config"])
                .arg(&config)
                .arg("--protect")
                .arg(mount)
                .arg("--journal")
                .arg(&journal)
                .arg("--ready-file")
                .arg(&ready)
                .env_remove("PORTCULLIS_LOG");
            (cmd, Some(journal))
        }
    };
    let mut cmd = cmd;
    die_with_parent(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr()?);
    let child = spawn_ready(cmd, target.as_str(), &ready, READY_BOUND, Some(&log))?;
    Ok(Running {
        target,
        child: Some(child),
        log,
        journal,
    })
}

/// What a stopped responder leaves.
#[derive(Debug, Default)]
pub struct Stopped {
    pub pid: Option<u32>,
    pub usage: Option<Usage>,
    /// Decisions and verdicts from the agent's journal.
    pub tally: Tally,
    /// What went wrong: a stop that was not clean, an unreadable journal.
    pub trouble: Vec<String>,
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its usage now.
    pub fn usage(&self) -> Option<Usage> {
        self.pid().and_then(usage_of)
    }

    /// Stops it (its usage read just before) and reads its journal.
    pub fn stop(mut self) -> Stopped {
        let mut out = Stopped {
            pid: self.pid(),
            usage: self.usage(),
            ..Stopped::default()
        };
        if let Some(mut child) = self.child.take() {
            let (how, clean) = stop_child(&mut child, STOP_BOUND);
            if !clean || !how.contains("exit status: 0") {
                out.trouble.push(format!(
                    "{} stopped badly: {how}{}",
                    self.target,
                    crate::process::log_tail(Some(&self.log), 10)
                ));
            }
        }
        if let Some(dir) = &self.journal {
            match journal_tally(dir) {
                Ok(t) => out.tally = t,
                Err(e) => out.trouble.push(e.to_string()),
            }
        }
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // An error path: never leave a responder (with its marks) behind.
        if let Some(mut child) = self.child.take() {
            let _ = stop_child(&mut child, STOP_BOUND);
        }
    }
}

/// Decisions by reason and verdicts by class in a stopped agent's journal.
pub fn journal_tally(dir: &Path) -> Result<Tally> {
    let store = JournalStore::open_existing(dir)
        .map_err(|e| Error::pipeline(format!("opening the journal {}", dir.display()), e))?;
    let mut t = Tally::default();
    for env in store.iter_from(1) {
        match env {
            Ok(env) => t.add(&env.body),
            Err(e) => {
                return Err(Error::pipeline(
                    format!("reading the journal {}", dir.display()),
                    e,
                ))
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_config_is_valid_for_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ResponderSettings {
            deadline: Duration::from_secs(5),
            kafka_section: None,
            scan_threads: 0,
            floor_stalls: false,
            telemetry_section: Some(
                crate::telemetry::TelemetryRig::start(crate::telemetry::TelemetrySpec {
                    trace_ratio: Some(0.5),
                    scrape_interval: Duration::from_secs(1),
                })
                .unwrap()
                .section(),
            ),
        };
        let text = agent_config(
            &settings,
            &dir.path().join("q"),
            settings.telemetry_section.as_deref(),
        );
        let built = portcullis_pipeline::config::ConfigFile::parse(&text)
            .unwrap()
            .build(
                "agent.toml",
                portcullis_pipeline::config::Overrides::default(),
            )
            .unwrap();
        assert_eq!(built.enforcer.deadline, Duration::from_secs(5));
        assert!(built.limits.timeout < built.enforcer.deadline);
        assert!(built.telemetry.metrics_listen.is_some());
    }
}
