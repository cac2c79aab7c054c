//! `portcullis siem-export`: the events topic to ECS/OCSF topics and CEF
//! over syslog (docs/siem.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use portcullis_telemetry::{LogOptions, Role, Telemetry};

use crate::agent::signal_ready;
use crate::cli::SiemExportArgs;
use crate::commands::run::stop_on_signal;
use crate::config::{ConfigFile, Overrides};
use crate::kafka::KafkaSection;
use crate::siem::{self, ExportOptions, SiemSection, SyslogSection};

pub fn run(args: SiemExportArgs, logs: &LogOptions) -> anyhow::Result<ExitCode> {
    let (mut file, origin) = match &args.config {
        Some(path) => (ConfigFile::load(path)?, path.display().to_string()),
        None => (ConfigFile::default(), "<no config file>".to_string()),
    };
    // Without [kafka] the defaults apply (bootstrap from KAFKA_BOOTSTRAP).
    file.kafka.get_or_insert_with(KafkaSection::default);
    let mut section = file.siem.take().unwrap_or_default();
    apply(&args, &mut section)?;
    file.siem = Some(section);
    let settings = file.build(
        &origin,
        Overrides {
            metrics_listen: args.metrics_listen.clone(),
            ..Overrides::default()
        },
    )?;
    let telemetry = Telemetry::start(
        &settings.telemetry,
        Role::SiemExport,
        &settings.node_id.0,
        logs,
        "the exporter group has not assigned partitions yet",
    )?;
    let kafka = settings
        .kafka
        .clone()
        .context("siem-export needs the [kafka] settings")?;
    let siem = settings
        .siem
        .clone()
        .context("siem-export needs the [siem] settings")?;
    let idle_exit = args
        .idle_exit
        .as_deref()
        .map(parse_seconds)
        .transpose()
        .context("--idle-exit")?;
    let opts = ExportOptions {
        kafka,
        siem,
        instance: args
            .instance
            .clone()
            .unwrap_or_else(|| settings.node_id.0.clone()),
        max_events: args.max_events,
        idle_exit,
        // Past a transaction's timeout (30 s) a stuck batch is a stuck
        // exporter.
        heartbeat: Some(
            telemetry
                .health()
                .heartbeat("siem-export consumer", Duration::from_secs(60)),
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ready = args.ready_file.clone();
    let health = telemetry.health().clone();
    runtime.block_on(async move {
        let rx = stop_on_signal("stopping after the current batch");
        siem::run(
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

/// The flags over the `[siem]` section of the file.
fn apply(args: &SiemExportArgs, s: &mut SiemSection) -> anyhow::Result<()> {
    if let Some(g) = &args.group {
        s.group = Some(g.clone());
    }
    if args.no_ecs {
        s.ecs = false;
    }
    if args.ocsf {
        s.ocsf = true;
    }
    if let Some(url) = &args.syslog {
        // A URL on the command line replaces the file's destination, and
        // with it the file's TLS files (they belong to that destination).
        let mut sys = SyslogSection::new(url);
        if let Some(old) = s.syslog.take() {
            sys.facility = old.facility;
            sys.max_datagram = old.max_datagram;
            sys.timeout = old.timeout;
        }
        s.syslog = Some(sys);
    }
    if let Some(sys) = s.syslog.as_mut() {
        let set = |slot: &mut Option<PathBuf>, flag: &Option<PathBuf>| {
            if let Some(v) = flag {
                *slot = Some(v.clone());
            }
        };
        set(&mut sys.ca, &args.syslog_ca);
        set(&mut sys.client_cert, &args.syslog_client_cert);
        set(&mut sys.client_key, &args.syslog_client_key);
        if let Some(f) = args.syslog_facility {
            sys.facility = f;
        }
    } else if args.syslog_ca.is_some()
        || args.syslog_client_cert.is_some()
        || args.syslog_client_key.is_some()
        || args.syslog_facility.is_some()
    {
        anyhow::bail!("the --syslog-* flags need --syslog URL (or siem.syslog.url in the config)");
    }
    Ok(())
}

/// `30` (seconds) or a duration like `30s`, `2m`.
fn parse_seconds(s: &str) -> anyhow::Result<Duration> {
    if let Ok(n) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s.trim())
        .with_context(|| format!("`{s}` is not a number of seconds or a duration like 30s"))
}
