//! Telemetry of portcullis: Prometheus metrics and the health endpoints on
//! one listener, OpenTelemetry traces over OTLP, and the log output (text
//! or JSON lines). See `docs/observability.md`.
//!
//! - [`catalog`]: every metric and span, with its labels and meaning;
//! - [`Telemetry::start`]: what a long-running command (`run`, `scanner`,
//!   `siem-export`) installs once its configuration is loaded;
//! - [`init_logs`]: the log output alone, for the other commands;
//! - [`trace`]: span helpers and the W3C context events and messages carry;
//! - [`health`]: `/healthz` and `/readyz`;
//! - [`notify`]: systemd's `READY=1`, `STOPPING=1` and watchdog (the
//!   agent, under `Type=notify`).
//!
//! Metrics go through the `metrics` facade: a handle taken before a
//! recorder is installed (or without one) does nothing, so with
//! `metrics_listen` unset the hot path pays nothing for them.

pub mod catalog;
pub mod config;
pub mod health;
pub mod histogram;
pub mod notify;
mod server;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use parking_lot::Mutex;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

pub use catalog::Role;
pub use config::{Protocol, TelemetrySection, TelemetrySettings, TracesSettings};
pub use health::{Health, Heartbeat, Probe};
pub use histogram::Histogram;
pub use notify::{Notifier, NotifyError, Watchdog};
pub use server::Collector;

/// Log output format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the current span and
    /// its parents (for log shippers).
    Json,
}

/// What `--log` and `--log-format` say.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// `RUST_LOG` syntax.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--log: `{filter}` is not a log filter: {message}")]
    LogFilter { filter: String, message: String },
    #[error("a log subscriber is installed already")]
    LogsInstalled,
    #[error("telemetry.metrics_listen: binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("telemetry: starting its runtime: {0}")]
    Runtime(std::io::Error),
    #[error("telemetry.traces: the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("telemetry.metrics_listen: a metrics recorder is installed already")]
    RecorderInstalled,
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;

fn fmt_layer(opts: &LogOptions) -> Result<BoxedLayer, TelemetryError> {
    let bad = |message: String| TelemetryError::LogFilter {
        filter: opts.filter.clone(),
        message,
    };
    let directive = format!("{}=off", trace::TARGET)
        .parse()
        .map_err(|e: tracing_subscriber::filter::ParseError| bad(e.to_string()))?;
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&opts.filter)
        .map_err(|e| bad(e.to_string()))?
        // Exported spans are not log lines.
        .add_directive(directive);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    Ok(match opts.format {
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => layer
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    })
}

/// Installs the log output alone (commands without `[telemetry]`).
pub fn init_logs(opts: &LogOptions) -> Result<(), TelemetryError> {
    tracing_subscriber::registry()
        .with(vec![fmt_layer(opts)?])
        .try_init()
        .map_err(|_| TelemetryError::LogsInstalled)
}

/// The telemetry of a long-running process. Dropping it flushes the spans
/// still queued (bounded) and closes the listener.
pub struct Telemetry {
    health: Arc<Health>,
    state: Option<Arc<server::State>>,
    provider: Option<SdkTracerProvider>,
    runtime: Option<tokio::runtime::Runtime>,
    listening: Option<SocketAddr>,
    /// systemd's socket (the agent under `Type=notify`).
    notifier: Option<Arc<Notifier>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("listening", &self.listening)
            .field("traces", &self.provider.is_some())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Installs the log output, the OpenTelemetry layer (traces enabled),
    /// the metrics recorder and the listener (`metrics_listen` set).
    /// `waiting_for` is what `/readyz` says until [`Health::set_ready`].
    pub fn start(
        settings: &TelemetrySettings,
        role: Role,
        node_id: &str,
        logs: &LogOptions,
        waiting_for: &str,
    ) -> Result<Telemetry, TelemetryError> {
        let health = Health::new(waiting_for);
        // Only the agent tells systemd it is ready (its marks are placed)
        // and keeps a watchdog; the services' units are Type=exec.
        let notifier = match role {
            Role::Agent => Notifier::from_env()?,
            _ => None,
        };
        let runtime = if settings.metrics_listen.is_some() || settings.traces.is_some() {
            Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("portcullis-telemetry")
                    .enable_all()
                    .build()
                    .map_err(TelemetryError::Runtime)?,
            )
        } else {
            None
        };
        let mut layers = vec![fmt_layer(logs)?];
        let provider = match (&settings.traces, &runtime) {
            (Some(t), Some(rt)) => {
                let provider = tracer_provider(t, role, node_id, rt)?;
                let tracer = provider.tracer("portcullis");
                layers.push(
                    // Only the catalog's attributes: no source locations,
                    // thread ids, targets or busy/idle times (each costs
                    // the hot path and says nothing an operator needs).
                    tracing_opentelemetry::layer()
                        .with_location(false)
                        .with_tracked_inactivity(false)
                        .with_threads(false)
                        .with_target(false)
                        .with_tracer(tracer)
                        .with_filter(
                            tracing_subscriber::filter::Targets::new()
                                .with_target(trace::TARGET, tracing::Level::TRACE),
                        )
                        .boxed(),
                );
                Some(provider)
            }
            _ => None,
        };
        tracing_subscriber::registry()
            .with(layers)
            .try_init()
            .map_err(|_| TelemetryError::LogsInstalled)?;
        if let Some(t) = &settings.traces {
            trace::set_ratio(t.sampling_ratio);
        }
        trace::set_enabled(provider.is_some());

        let mut state = None;
        let mut listening = None;
        if let (Some(addr), Some(rt)) = (settings.metrics_listen, &runtime) {
            let listener =
                server::bind(addr).map_err(|source| TelemetryError::Bind { addr, source })?;
            listening = listener.local_addr().ok();
            let prometheus = install_recorder()?;
            metrics::gauge!(catalog::BUILD_INFO.name, "version" => env!("CARGO_PKG_VERSION"), "role" => role.as_str())
                .set(1.0);
            let process = metrics_process::Collector::default();
            process.describe();
            let ready = metrics::gauge!(catalog::READY.name);
            let probe = health.clone();
            let s = Arc::new(server::State {
                prometheus: Some(prometheus.clone()),
                health: health.clone(),
                collectors: Mutex::new(vec![Box::new(move || {
                    process.collect();
                    ready.set(if probe.is_ready() { 1.0 } else { 0.0 });
                })]),
            });
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| TelemetryError::Bind { addr, source })?;
            rt.spawn(server::serve(listener, s.clone()));
            // Histograms are drained into their buckets here, not at
            // each observation.
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    prometheus.run_upkeep();
                }
            });
            state = Some(s);
            tracing::info!(listen = %addr, role = role.as_str(), "telemetry: /metrics, /healthz and /readyz");
        }
        if let Some(t) = &settings.traces {
            tracing::info!(endpoint = %t.endpoint, protocol = ?t.protocol, sampling_ratio = t.sampling_ratio, "telemetry: traces exported over OTLP");
        }
        if let Some(n) = &notifier {
            tracing::info!(?n, "telemetry: systemd notifications");
        }
        Ok(Telemetry {
            health,
            state,
            provider,
            runtime,
            listening,
            notifier,
        })
    }

    /// Ready: `/readyz` answers 200, and systemd hears `READY=1` with
    /// `status`.
    pub fn ready(&self, status: &str) {
        self.health.set_ready();
        if let Some(n) = &self.notifier {
            n.ready(status);
        }
    }

    /// Stopping: `/readyz` answers 503, and systemd hears `STOPPING=1`.
    pub fn stopping(&self, status: &str) {
        self.health.set_not_ready("stopping");
        if let Some(n) = &self.notifier {
            n.stopping(status);
        }
    }

    /// systemd's watchdog, when the unit has `WatchdogSec=`.
    pub fn watchdog(&self) -> Option<Arc<Watchdog>> {
        self.notifier.as_ref().and_then(Notifier::watchdog)
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The address `/metrics` listens on, if any.
    pub fn listening(&self) -> Option<SocketAddr> {
        self.listening
    }

    /// Runs `c` before each render of `/metrics` (a no-op without a
    /// listener).
    pub fn add_collector(&self, c: Collector) {
        if let Some(s) = &self.state {
            s.collectors.lock().push(c);
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        trace::set_enabled(false);
        if let Some(p) = self.provider.take() {
            // Bounded by the exporter's timeout.
            if let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "telemetry: spans not flushed");
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

static METRICS_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process keeps metrics (a listener is configured). Work
/// done only to feed metrics (librdkafka statistics) checks it.
pub fn metrics_on() -> bool {
    METRICS_ON.load(std::sync::atomic::Ordering::Relaxed)
}

/// The Prometheus recorder, installed globally, with the catalog's
/// descriptions and histogram buckets.
fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let recorder = prometheus_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderInstalled)?;
    METRICS_ON.store(true, std::sync::atomic::Ordering::Relaxed);
    describe();
    Ok(handle)
}

/// The Prometheus recorder of every role, not installed. The catalog's
/// histograms are not kept by it but by [`histogram`] (rendered next to
/// its output).
pub fn prometheus_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

/// Lets [`Histogram::new`] keep series (benches that install a recorder of
/// their own).
pub fn set_metrics_on(on: bool) {
    METRICS_ON.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Registers the help text of every metric of the catalog.
pub fn describe() {
    for m in catalog::METRICS {
        match m.kind {
            catalog::Kind::Counter => metrics::describe_counter!(m.name, m.help),
            catalog::Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            // Described where they are rendered (histogram::render).
            catalog::Kind::Histogram => {}
        }
    }
}

fn tracer_provider(
    t: &TracesSettings,
    role: Role,
    node_id: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<SdkTracerProvider, TelemetryError> {
    let bad = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: t.endpoint.clone(),
        message: e.to_string(),
    };
    // The gRPC client lives on the telemetry runtime.
    let _guard = rt.enter();
    let timeout = Duration::from_secs(5);
    let exporter = match t.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&t.endpoint)
            .with_timeout(timeout)
            .build(),
        Protocol::Http => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&t.endpoint)
            .with_timeout(timeout)
            .with_headers(Default::default())
            .build(),
    }
    .map_err(|e| bad(&e))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(2048)
                .with_scheduled_delay(t.export_interval)
                .build(),
        )
        .build();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mut attrs = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new(
            "service.instance.id",
            format!("{node_id}/{}", std::process::id()),
        ),
        KeyValue::new("host.name", host),
        KeyValue::new("portcullis.node_id", node_id.to_string()),
        KeyValue::new("portcullis.role", role.as_str()),
    ];
    attrs.extend(
        t.resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            t.service_name
                .clone()
                .unwrap_or_else(|| role.service_name().to_string()),
        )
        .with_attributes(attrs)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        // New traces (accesses) are sampled before their first span
        // (trace::sample); everything else follows its parent.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}
