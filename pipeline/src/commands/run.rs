//! `portcullis run`: the node agent until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_schemas::Mode;

use portcullis_telemetry::{LogOptions, Role, Telemetry};

use crate::agent::{open_journal, raise_fd_limit, signal_ready, Agent};
use crate::cli::{ModeArg, RunArgs};
use crate::config::{ConfigFile, Overrides, Settings};

pub fn settings(args: &RunArgs) -> anyhow::Result<Settings> {
    let (file, origin) = match &args.config {
        Some(path) => (ConfigFile::load(path)?, path.display().to_string()),
        None => (ConfigFile::default(), "<defaults>".to_string()),
    };
    let overrides = Overrides {
        protect: args.protect.clone(),
        mode: args.mode.map(|m| match m {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Audit => Mode::Audit,
        }),
        rules: args.rules.clone(),
        journal: args.journal.clone(),
        containers: args.containers,
        metrics_listen: args.metrics_listen.clone(),
    };
    Ok(file.build(&origin, overrides)?)
}

pub fn run(args: RunArgs, logs: &LogOptions) -> anyhow::Result<ExitCode> {
    let settings = settings(&args)?;
    if settings.protect.is_empty() && !settings.containers.enabled {
        anyhow::bail!(
            "nothing to protect: give --protect MOUNTPOINT, `protect` in the config file, or --containers"
        );
    }
    // First, so that /healthz answers and /readyz says what it waits for
    // while the rules compile and the mounts are marked.
    let telemetry = Telemetry::start(
        &settings.telemetry,
        Role::Agent,
        &settings.node_id.0,
        logs,
        "the protected mounts are not marked yet",
    )?;
    raise_fd_limit();
    let system = actix_rt::System::new();
    system.block_on(async {
        let journal = open_journal(&settings)?;
        let agent = Agent::start(&settings, journal, Some(&telemetry)).await?;
        // /readyz, systemd's READY=1 (Type=notify) and --ready-file: the
        // marks are in place.
        telemetry.ready(&ready_status(&settings));
        signal_ready(args.ready_file.as_deref())?;
        let signal = wait_for_signal().await?;
        tracing::info!(signal, "stopping");
        telemetry.stopping(&format!(
            "{signal}: answering every pending decision, then exiting"
        ));
        agent.shutdown(Some(signal)).await?;
        anyhow::Ok(())
    })?;
    drop(telemetry);
    Ok(ExitCode::SUCCESS)
}

/// What the agent tells systemd once ready (`systemctl status` shows it).
fn ready_status(settings: &Settings) -> String {
    let mode = settings.enforcer.mode;
    let mounts = settings.protect.len();
    let containers = if settings.containers.enabled {
        " and every container"
    } else {
        ""
    };
    format!(
        "protecting {mounts} mount{}{containers} ({mode} mode)",
        if mounts == 1 { "" } else { "s" }
    )
}

/// A stop flag for a service loop: turns true at SIGINT or SIGTERM, after
/// logging `message` with the signal. Must be called inside a tokio
/// runtime (actix's System is one).
pub fn stop_on_signal(message: &'static str) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if let Ok(sig) = wait_for_signal().await {
            tracing::info!(signal = sig, "{message}");
        }
        let _ = tx.send(true);
    });
    rx
}

pub async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
