//! The `portcullis+telemetry` target (`--telemetry`): the agent with its
//! telemetry on, as an operator runs it, to set against `portcullis`
//! (telemetry off) in the same run.
//!
//! - metrics: `[telemetry] metrics_listen` on a loopback port, scraped
//!   every second by [`Scraper`] as a Prometheus with a short interval
//!   would (the agent renders the whole exposition each time);
//! - traces (`--trace-ratio R`): `[telemetry.traces]` sampled at R and
//!   exported over OTLP/HTTP to [`Sink`], a receiver in this tool that
//!   decodes every request and counts the spans by name.
//!
//! What they saw is checked against the journal: the decisions the last
//! scrape counts are the decisions the journal holds, and with traces on
//! enough accesses, access spans arrived.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Bound on one scrape (connect, request, whole response).
const SCRAPE_BOUND: Duration = Duration::from_secs(5);

/// Largest OTLP request the sink takes (the exporter batches at most 512
/// spans, far below this).
const MAX_OTLP_BODY: usize = 16 << 20;

/// What the telemetry target turns on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetrySpec {
    /// Trace sampling ratio; `None`: metrics only.
    pub trace_ratio: Option<f64>,
    /// Between two scrapes of `/metrics`.
    pub scrape_interval: Duration,
}

/// What the telemetry target's observers saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryReport {
    pub metrics_listen: String,
    pub scrape_interval_s: f64,
    /// Scrapes answered 200, and not.
    pub scrapes: u64,
    pub scrape_failures: u64,
    /// The slowest scrape, and the size of the last exposition.
    pub scrape_max_ms: f64,
    pub exposition_bytes: u64,
    /// `sum(portcullis_decisions_total)` at the last scrape, just before
    /// the agent stopped.
    pub decisions_in_metrics: Option<u64>,
    pub trace_ratio: Option<f64>,
    /// OTLP/HTTP export requests the sink received, and their spans by
    /// name.
    pub otlp_requests: u64,
    pub otlp_bytes: u64,
    pub spans: BTreeMap<String, u64>,
}

/// A free loopback port: bound, read, released (the agent binds it a
/// moment later; another process taking it in between fails the agent's
/// start, naming the field).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").ctx(|| "finding a free loopback port".into())?;
    Ok(l.local_addr()
        .ctx(|| "finding a free loopback port".into())?
        .port())
}

/// The agent's `[telemetry]` section for the target, and what observes it.
#[derive(Debug)]
pub struct TelemetryRig {
    pub spec: TelemetrySpec,
    pub metrics: SocketAddr,
    sink: Option<Sink>,
}

impl TelemetryRig {
    pub fn start(spec: TelemetrySpec) -> Result<Self> {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let sink = match spec.trace_ratio {
            Some(_) => Some(Sink::start()?),
            None => None,
        };
        Ok(Self {
            spec,
            metrics,
            sink,
        })
    }

    /// The agent's configuration for it, appended to the agent's file.
    pub fn section(&self) -> String {
        let mut s = format!("\n[telemetry]\nmetrics_listen = \"{}\"\n", self.metrics);
        if let (Some(ratio), Some(sink)) = (self.spec.trace_ratio, &self.sink) {
            s.push_str(&format!(
                "\n[telemetry.traces]\nenabled = true\nprotocol = \"http\"\nendpoint = \"http://{}/v1/traces\"\nsampling_ratio = {ratio}\nservice_name = \"portcullis-loadtest-agent\"\nexport_interval = \"1s\"\n",
                sink.addr
            ));
        }
        s
    }

    /// Starts scraping (once the agent is ready).
    pub fn scrape(&self) -> Scraper {
        Scraper::start(self.metrics, self.spec.scrape_interval)
    }

    /// What was seen: the scraper's figures (its last scrape taken now,
    /// before the agent stops) and the sink's, read `grace` after the
    /// agent stopped (its last spans are flushed at exit).
    pub fn report(&self, scraper: Scraper) -> TelemetryReport {
        let mut r = scraper.finish();
        r.metrics_listen = self.metrics.to_string();
        r.scrape_interval_s = self.spec.scrape_interval.as_secs_f64();
        r.trace_ratio = self.spec.trace_ratio;
        r
    }

    /// Adds the sink's counts to `r`.
    pub fn add_traces(&self, r: &mut TelemetryReport) {
        if let Some(sink) = &self.sink {
            let c = sink.counts.lock().map(|c| c.clone()).unwrap_or_default();
            r.otlp_requests = c.requests;
            r.otlp_bytes = c.bytes;
            r.spans = c.spans;
        }
    }
}

/// What the sink counted.
#[derive(Debug, Clone, Default)]
struct SinkCounts {
    requests: u64,
    bytes: u64,
    spans: BTreeMap<String, u64>,
}

/// An OTLP/HTTP trace receiver on 127.0.0.1: decodes each
/// `ExportTraceServiceRequest` (protobuf), counts its spans by name and
/// answers an empty `ExportTraceServiceResponse`. Runs on its own thread
/// (a one-thread runtime) until dropped.
#[derive(Debug)]
struct Sink {
    addr: SocketAddr,
    counts: Arc<Mutex<SinkCounts>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start() -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").ctx(|| "binding the OTLP sink".to_string())?;
        let addr = listener
            .local_addr()
            .ctx(|| "binding the OTLP sink".to_string())?;
        listener
            .set_nonblocking(true)
            .ctx(|| "binding the OTLP sink".to_string())?;
        let counts = Arc::new(Mutex::new(SinkCounts::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .ctx(|| "starting the OTLP sink's runtime".to_string())?;
        let shared = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || runtime.block_on(serve(listener, shared, stopped)))
            .ctx(|| "starting the OTLP sink".to_string())?;
        Ok(Self {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    counts: Arc<Mutex<SinkCounts>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let counts = Arc::clone(&counts);
                async move { Ok::<_, std::convert::Infallible>(receive(req, &counts).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn receive(
    req: Request<hyper::body::Incoming>,
    counts: &Mutex<SinkCounts>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        r
    };
    if req.uri().path() != "/v1/traces" {
        return reply(StatusCode::NOT_FOUND, vec![]);
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_OTLP_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, vec![]),
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return reply(StatusCode::BAD_REQUEST, vec![]);
    };
    if let Ok(mut c) = counts.lock() {
        c.requests += 1;
        c.bytes += body.len() as u64;
        for span in export
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            *c.spans.entry(span.name.clone()).or_default() += 1;
        }
    }
    reply(
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Scrapes `/metrics` every interval on its own thread.
#[derive(Debug)]
pub struct Scraper {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    max_us: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    fn start(addr: SocketAddr, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let max_us = Arc::new(AtomicU64::new(0));
        let (s, ok, bad, max) = (
            Arc::clone(&stop),
            Arc::clone(&scrapes),
            Arc::clone(&failures),
            Arc::clone(&max_us),
        );
        let thread = std::thread::Builder::new()
            .name("scraper".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match get(addr, "/metrics") {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => bad.fetch_add(1, Ordering::Relaxed),
                    };
                    max.fetch_max(
                        u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    // Sleeps in short steps, so that finish() is quick.
                    let until = Instant::now() + interval;
                    while Instant::now() < until && !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .ok();
        Self {
            addr,
            stop,
            scrapes,
            failures,
            max_us,
            thread,
        }
    }

    /// Stops the scraping, takes a last scrape and reads the decisions
    /// from it.
    fn finish(mut self) -> TelemetryReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut r = TelemetryReport::default();
        match get(self.addr, "/metrics") {
            Ok(text) => {
                self.scrapes.fetch_add(1, Ordering::Relaxed);
                r.exposition_bytes = text.len() as u64;
                r.decisions_in_metrics = sum_of(&text, "portcullis_decisions_total");
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        r.scrapes = self.scrapes.load(Ordering::Relaxed);
        r.scrape_failures = self.failures.load(Ordering::Relaxed);
        r.scrape_max_ms = self.max_us.load(Ordering::Relaxed) as f64 / 1000.0;
        r
    }
}

/// `GET path` over HTTP/1.0 (the server closes the connection after the
/// response), bounded by [`SCRAPE_BOUND`]. The body when the status is
/// 200.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let deadline = Instant::now() + SCRAPE_BOUND;
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_BOUND)?;
    s.set_write_timeout(Some(SCRAPE_BOUND))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut raw = vec![];
    let mut buf = [0u8; 64 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "scrape took too long",
            ));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf)? {
            0 => break,
            n => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_string())
}

/// The sum of every sample of `metric` in a Prometheus exposition.
fn sum_of(text: &str, metric: &str) -> Option<u64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit(' ').next()?;
        let v: f64 = value.parse().ok()?;
        *total.get_or_insert(0u64) += v as u64;
    }
    total
}

/// What must hold of a telemetry target: every scrape answered, the
/// metrics' decisions are the journal's, and sampled traces arrived (one
/// access span per sampled decision).
pub fn check(r: &TelemetryReport, journal_decisions: u64) -> Vec<String> {
    let accesses = journal_decisions;
    let mut out = vec![];
    if r.scrape_failures > 0 {
        out.push(format!(
            "{} of {} scrapes of {} failed",
            r.scrape_failures,
            r.scrapes + r.scrape_failures,
            r.metrics_listen
        ));
    }
    match r.decisions_in_metrics {
        Some(d) if d == journal_decisions => {}
        Some(d) => out.push(format!(
            "the metrics count {d} decisions, the journal {journal_decisions}"
        )),
        None => out.push("the last scrape has no portcullis_decisions_total".into()),
    }
    if let Some(ratio) = r.trace_ratio {
        // At least 50 sampled accesses expected: none arriving is not chance.
        let expected = ratio * accesses as f64;
        let got = r.spans.get("access").copied().unwrap_or(0);
        if expected >= 50.0 && got == 0 {
            out.push(format!(
                "traces at {ratio}: no access span arrived ({expected:.0} expected from {accesses} decisions)"
            ));
        }
    }
    out
}

/// Reads `--trace-ratio`.
pub fn ratio_flag(r: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(Error::flag(
            "trace-ratio",
            format!("{r} is not between 0 and 1"),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_sample_of_a_metric_and_no_other() {
        let text = "# HELP portcullis_decisions_total x\n# TYPE portcullis_decisions_total counter\nportcullis_decisions_total{decision=\"allow\",reason=\"clean\"} 41\nportcullis_decisions_total{decision=\"deny\",reason=\"infected\"} 2\nportcullis_decisions_totally 7\nportcullis_decision_seconds_count 9\n";
        assert_eq!(sum_of(text, "portcullis_decisions_total"), Some(43));
        assert_eq!(sum_of(text, "portcullis_absent_total"), None);
    }

    #[test]
    fn the_sink_counts_spans_by_name_and_the_scraper_reads_a_listener() {
        let sink = Sink::start().unwrap();
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let span = |name: &str| Span {
            name: name.into(),
            ..Span::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span("access"), span("scan"), span("access")],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let body = req.encode_to_vec();
        let mut s = TcpStream::connect(sink.addr).unwrap();
        s.write_all(
            format!(
                "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        s.write_all(&body).unwrap();
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let c = sink.counts.lock().unwrap().clone();
        assert_eq!(c.requests, 1);
        assert_eq!(c.spans.get("access"), Some(&2));
        assert_eq!(c.spans.get("scan"), Some(&1));

        // A request that is not OTLP is refused and not counted.
        let mut s = TcpStream::connect(sink.addr).unwrap();
        s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n\xff\xff\xff").unwrap();
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(sink.counts.lock().unwrap().requests, 1);

        // The scraper against a listener that is not there: failures, no
        // decisions, and the check says so.
        let scraper = Scraper::start(
            SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
            Duration::from_millis(50),
        );
        std::thread::sleep(Duration::from_millis(120));
        let r = scraper.finish();
        assert!(r.scrape_failures >= 2, "{r:?}");
        assert_eq!(r.scrapes, 0);
        let problems = check(&r, 10);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn the_check_compares_metrics_with_the_journal_and_wants_spans() {
        let ok = TelemetryReport {
            scrapes: 3,
            decisions_in_metrics: Some(100),
            trace_ratio: Some(1.0),
            spans: [("access".to_string(), 100)].into(),
            ..TelemetryReport::default()
        };
        assert!(check(&ok, 100).is_empty());
        let p = check(&ok, 99);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("100 decisions, the journal 99"), "{p:?}");
        let silent = TelemetryReport {
            spans: BTreeMap::new(),
            ..ok.clone()
        };
        assert_eq!(check(&silent, 100).len(), 1);
        // Too few sampled accesses expected to call their absence a fault.
        let rare = TelemetryReport {
            trace_ratio: Some(0.01),
            ..silent
        };
        assert!(check(&rare, 100).is_empty());
    }
}
