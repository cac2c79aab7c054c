//! `portcullis scanner`: a scanner service of distributed mode.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::agent::{raise_fd_limit, signal_ready};
use crate::cli::ScannerArgs;
use crate::commands::run::stop_on_signal;
use crate::config::{ConfigFile, Overrides};
use crate::distributed::service::{self, ServiceOptions};
use crate::rules::load_ruleset;

pub fn run(args: ScannerArgs) -> anyhow::Result<ExitCode> {
    let file = ConfigFile::load(&args.config)?;
    let origin = args.config.display().to_string();
    let settings = file.build(
        &origin,
        Overrides {
            rules: args.rules.clone(),
            ..Overrides::default()
        },
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
    let opts = ServiceOptions {
        kafka,
        ruleset,
        limits: settings.limits,
        threads: settings.scan_threads,
        instance,
    };
    let system = actix_rt::System::new();
    system.block_on(async move {
        let rx = stop_on_signal("stopping");
        let ready = args.ready_file.clone();
        service::run(opts, move || signal_ready(ready.as_deref()), rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}
