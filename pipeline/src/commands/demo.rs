//! `portcullis demo`: the agent at work, safely, in seconds.
//!
//! The process enters a private mount namespace (before any thread starts),
//! mounts a tmpfs there, and protects only that tmpfs: nothing outside the
//! demo is ever marked. It then shows, with real opens from child processes:
//! a clean file allowed, the EICAR test file denied in Enforce mode, and the
//! same file allowed but recorded in Audit mode; and prints the journal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use portcullis_actors::actions::{ActionChoice, ActionsConfig};
use portcullis_actors::journal::{Committed, Journal, Subscribe};
use portcullis_interceptor::sandbox;
use portcullis_schemas::{Envelope, EventBody, Mode, VerdictClass};

use crate::agent::{open_journal, Agent};
use crate::cli::DemoArgs;
use crate::config::{ConfigFile, Overrides, Settings};
use crate::render;

/// The EICAR test file (harmless by definition).
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

static MOUNT: OnceLock<PathBuf> = OnceLock::new();

/// Runs while the process is single-threaded: checks what the demo needs,
/// enters a private mount namespace and mounts the demo tmpfs.
pub fn prepare() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "the demo needs root: fanotify permission events and mount namespaces need CAP_SYS_ADMIN.\n\
             Run it as root (e.g. `sudo portcullis demo`)."
        );
    }
    sandbox::fanotify_permission_available()
        .map_err(|why| anyhow::anyhow!("this kernel cannot run the demo: {why}"))?;
    sandbox::enter_private_mount_namespace().context("entering a private mount namespace")?;
    let dir = std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    sandbox::mount_tmpfs(&dir, 64 * 1024 * 1024)
        .with_context(|| format!("mounting a tmpfs on {}", dir.display()))?;
    let _ = MOUNT.set(dir);
    Ok(())
}

#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<Envelope>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Committed> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Committed, _: &mut Self::Context) {
        if let Ok(mut v) = self.0.lock() {
            v.extend(msg.0.iter().cloned());
        }
    }
}

fn accessed(e: &Envelope, name: &str) -> bool {
    matches!(&e.body, EventBody::FileAccessed(a) if a.file.path.as_bytes().ends_with(name.as_bytes()))
}

impl Collector {
    fn count(&self, pred: impl Fn(&Envelope) -> bool) -> usize {
        self.0
            .lock()
            .map(|v| v.iter().filter(|e| pred(e)).count())
            .unwrap_or(0)
    }

    fn has(&self, pred: impl Fn(&Envelope) -> bool) -> bool {
        self.0.lock().map(|v| v.iter().any(pred)).unwrap_or(false)
    }
}

/// Opens a file from a child process, as any workload would.
async fn open_as_workload(argv: Vec<String>) -> (bool, String) {
    let out = actix_rt::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .arg("20")
            .args(&argv)
            .output()
    })
    .await;
    match out {
        Ok(Ok(o)) => {
            let text = if o.status.success() {
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            } else {
                String::from_utf8_lossy(&o.stderr).trim().to_string()
            };
            (o.status.success(), text)
        }
        Ok(Err(e)) => (false, e.to_string()),
        Err(e) => (false, e.to_string()),
    }
}

fn settings(mount: &Path, journal: &Path, mode: Mode) -> anyhow::Result<Settings> {
    let file = ConfigFile {
        actions: ActionsConfig {
            first: ActionChoice::Block,
            second: ActionChoice::None,
            quarantine_dir: journal.join("quarantine"),
            ..ActionsConfig::default()
        },
        ..ConfigFile::default()
    };
    Ok(file.build(
        "<demo>",
        Overrides {
            protect: vec![mount.to_path_buf()],
            mode: Some(mode),
            rules: None,
            journal: Some(journal.to_path_buf()),
            containers: false,
            metrics_listen: None,
        },
    )?)
}

struct Check {
    ok: bool,
}

impl Check {
    fn step(&mut self, expected: bool, what: &str, detail: &str) {
        let mark = if expected { "ok  " } else { "FAIL" };
        self.ok &= expected;
        println!("  [{mark}] {what}: {detail}");
    }
}

async fn wait_for(c: &Collector, pred: impl Fn(&Envelope) -> bool + Copy) -> bool {
    for _ in 0..200 {
        if c.has(pred) {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn infected_verdict(e: &Envelope, name: &str) -> bool {
    matches!(&e.body, EventBody::VerdictIssued(v)
        if v.verdict.class() == VerdictClass::Infected && v.path.as_bytes().ends_with(name.as_bytes()))
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mount = MOUNT
        .get()
        .context("the demo tmpfs is not mounted")?
        .clone();
    let tmp_journal = tempfile::Builder::new()
        .prefix("portcullis-demo-journal-")
        .tempdir()?;
    let journal_dir = args
        .journal
        .clone()
        .unwrap_or_else(|| tmp_journal.path().to_path_buf());
    let clean = mount.join("hello.txt");
    let eicar = mount.join("eicar.com");
    let tool = mount.join("echo");
    std::fs::write(&clean, b"hello from a clean file\n")?;
    std::fs::write(&eicar, EICAR)?;
    std::fs::copy("/bin/echo", &tool).context("copying /bin/echo into the demo tmpfs")?;

    println!("portcullis demo");
    println!(
        "  private mount namespace, tmpfs at {} (nothing else is marked)",
        mount.display()
    );
    println!("  journal: {}", journal_dir.display());

    let system = actix_rt::System::new();
    let result: anyhow::Result<(bool, Vec<Envelope>)> = system.block_on(async {
        let mut check = Check { ok: true };
        let collector = Collector::default();
        let enforce = settings(&mount, &journal_dir, Mode::Enforce)?;
        let handle = open_journal(&enforce)?;
        let journal: Addr<Journal> = handle.addr.clone();
        journal.do_send(Subscribe(collector.clone().start().recipient()));

        println!("\nEnforce mode: opens wait for the scan");
        let agent = Agent::start(&enforce, handle.clone(), None).await?;
        let (ok, out) = open_as_workload(vec!["cat".into(), clean.display().to_string()]).await;
        check.step(ok, "cat hello.txt", &format!("allowed, read {out:?}"));
        let (ok, out) = open_as_workload(vec!["cat".into(), eicar.display().to_string()]).await;
        check.step(
            !ok && out.contains("not permitted"),
            "cat eicar.com",
            &format!("denied: {out}"),
        );
        let (ok, out) =
            open_as_workload(vec![tool.display().to_string(), "exec allowed".into()]).await;
        check.step(ok, "exec ./echo", &format!("allowed, printed {out:?}"));
        let (ok, _) = open_as_workload(vec!["cat".into(), clean.display().to_string()]).await;
        journal.send(portcullis_actors::journal::Sync).await??;
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let seen = collector.count(|e| accessed(e, "hello.txt"));
        check.step(
            ok && seen == 1,
            "cat hello.txt again",
            &format!("allowed by the kernel cache: the agent saw {seen} open(s) of it in all"),
        );
        agent.shutdown(None).await?;

        println!("\nAudit mode: opens never wait; detections are only recorded");
        let audit = settings(&mount, &journal_dir, Mode::Audit)?;
        let agent = Agent::start(&audit, handle.clone(), None).await?;
        let eicar2 = mount.join("eicar-audit.com");
        std::fs::write(&eicar2, EICAR)?;
        let (ok, out) = open_as_workload(vec!["cat".into(), eicar2.display().to_string()]).await;
        check.step(
            ok,
            "cat eicar-audit.com",
            &format!("allowed, read {} bytes", out.len()),
        );
        let recorded = wait_for(&collector, |e| infected_verdict(e, "eicar-audit.com")).await;
        check.step(
            recorded,
            "the detection",
            "recorded in the journal, no action taken",
        );
        agent.shutdown(None).await?;
        let events = collector.0.lock().map(|v| v.clone()).unwrap_or_default();
        Ok((check.ok, events))
    });
    let (ok, events) = result?;

    println!("\nThe journal ({} events):", events.len());
    println!("{}", render::HEADER);
    for e in &events {
        println!("{}", render::row(e));
    }
    if args.journal.is_some() {
        println!(
            "\nRead it again with: portcullis events --journal {}",
            journal_dir.display()
        );
    }
    let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&mount);
    if ok {
        println!("\nAll demo checks passed.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nSome demo checks FAILED (see above).");
        Ok(ExitCode::from(1))
    }
}
