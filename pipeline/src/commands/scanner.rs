//! `portcullis scanner`: a scanner service of distributed mode.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use portcullis_telemetry::{LogOptions, Role, Telemetry};

use crate::agent::{raise_fd_limit, signal_ready};
use crate::cli::ScannerArgs;
use crate::commands::run::stop_on_signal;
use crate::config::{ConfigFile, Overrides};
use crate::distributed::service::{self, ServiceOptions};
use crate::rules::{hangups, load_ruleset, reload_loop, ReloadTarget};
use portcullis_actors::scanner::{LiveRules, Ruleset};

pub fn run(args: ScannerArgs, logs: &LogOptions) -> anyhow::Result<ExitCode> {
    let file = ConfigFile::load(&args.config)?;
    let origin = args.config.display().to_string();
    let settings = file.build(
        &origin,
        Overrides {
            rules: args.rules.clone(),
            metrics_listen: args.metrics_listen.clone(),
            ..Overrides::default()
        },
    )?;
    let telemetry = Telemetry::start(
        &settings.telemetry,
        Role::Scanner,
        &settings.node_id.0,
        logs,
        "the scanner group has not assigned partitions yet",
    )?;
    let kafka = settings
        .kafka
        .clone()
        .with_context(|| format!("{origin}: kafka: a scanner service needs a [kafka] section"))?;
    let ruleset = Arc::new(load_ruleset(settings.rules.as_deref())?);
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("{}-{}", settings.node_id, std::process::id()));
    raise_fd_limit();
    let live = LiveRules::new(ruleset.clone());
    let opts = ServiceOptions {
        kafka,
        rules: live.clone(),
        limits: settings.limits,
        threads: settings.scan_threads,
        instance,
        heartbeat: Some(
            telemetry
                .health()
                .heartbeat("request poll loop", std::time::Duration::from_secs(30)),
        ),
    };
    let system = actix_rt::System::new();
    let health = telemetry.health().clone();
    let (dir, watch) = (settings.rules.clone(), settings.rules_watch);
    system.block_on(async move {
        // Reloads: SIGHUP, and the directory watch. Scan threads take the
        // new rules before their next scan; replies carry the version.
        let hup = hangups()?;
        actix_rt::spawn(async move {
            if let Err(e) = reload_loop(hup, dir, watch, ruleset, ServiceRules(live)).await {
                tracing::error!("rules reloads are off: {e:#}");
            }
        });
        let rx = stop_on_signal("stopping");
        let ready = args.ready_file.clone();
        service::run(
            opts,
            move || {
                health.set_ready();
                signal_ready(ready.as_deref())
            },
            rx,
        )
        .await
    })?;
    drop(telemetry);
    Ok(ExitCode::SUCCESS)
}

/// A scanner service's reloads: published to its scan threads (no journal:
/// they are logged and counted).
struct ServiceRules(LiveRules);

impl ReloadTarget for ServiceRules {
    fn apply(&mut self, ruleset: Arc<Ruleset>) -> futures::future::LocalBoxFuture<'_, bool> {
        self.0.publish(ruleset);
        Box::pin(std::future::ready(true))
    }
}
