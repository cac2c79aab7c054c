//! The Kafka side of the cluster scenario (and of the pipeline scenario
//! over Kafka): topics on a fresh prefix, N `portcullis scanner` services
//! (or ones already running), the consumer-group lag of the scanners, and
//! the clean-up.
//!
//! Loopback only: a bootstrap list naming any other host is refused, so a
//! load test never reaches a shared cluster by mistake.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portcullis_pipeline::config::{ConfigFile, Overrides};
use portcullis_pipeline::kafka::{self, KafkaSettings, Topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, IoContext, Result};
use crate::process::{die_with_parent, log_tail, stop_child, usage_of, Usage};
use crate::report::{KafkaLag, KafkaParams, LagSample, ScannerReport, TargetName, TargetRun};

/// Bound on every call to the broker.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// How the Kafka side of a run is set up.
#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub bootstrap: String,
    /// Scanner services to start (ignored with `scanners_at`).
    pub scanners: usize,
    /// Topic prefix of scanner services already running: start none.
    pub scanners_at: Option<String>,
    /// Their consumer group (default `<prefix>.scanners`, the agent's
    /// default).
    pub scanner_group: Option<String>,
    pub partitions: i32,
    /// Scanner threads per service (0 = one per core).
    pub scanner_threads: usize,
    pub keep_topics: bool,
    /// `[kafka.librdkafka]` settings for every client of the run.
    pub librdkafka: Vec<(String, String)>,
}

/// `true` if every host of a bootstrap list is a loopback address.
pub fn is_loopback(bootstrap: &str) -> bool {
    bootstrap.split(',').map(str::trim).all(|hp| {
        let host = match hp.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => hp,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }) && !bootstrap.trim().is_empty()
}

/// Removes ANSI escape sequences (coloured log lines).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The last `name=<integer>` field in a log text (ANSI colours ignored).
pub fn last_field(log: &str, name: &str) -> Option<u64> {
    let clean = strip_ansi(log);
    let pat = format!("{name}=");
    let mut found = None;
    for (i, _) in clean.match_indices(&pat) {
        let before_ok = i == 0
            || !clean[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !before_ok {
            continue;
        }
        let digits: String = clean[i + pat.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(v) = digits.parse() {
            found = Some(v);
        }
    }
    found
}

/// Runs a future to completion on a fresh runtime on its own thread (so
/// it works from inside another runtime, e.g. actix's).
pub(crate) fn block_on_thread<F, T>(f: F) -> Result<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(f))
    })
    .join()
    .map_err(|_| Error::kafka("admin", "the admin thread panicked"))?
    .ctx(|| "starting a runtime for the Kafka admin calls".to_string())
}

/// One scanner service we started.
#[derive(Debug)]
struct Service {
    instance: String,
    child: Child,
    log: PathBuf,
}

/// Topics, scanner services and the lag probe of a run.
pub struct KafkaRig {
    pub settings: Arc<KafkaSettings>,
    /// The `[kafka]` section the agent (and our scanners) use.
    pub section: String,
    pub params: KafkaParams,
    services: Vec<Service>,
    created_topics: bool,
    keep_topics: bool,
    lag_probe: BaseConsumer,
    at_start: std::sync::Mutex<Vec<Usage>>,
}

impl std::fmt::Debug for KafkaRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRig")
            .field("params", &self.params)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

fn section_text(
    bootstrap: &str,
    prefix: &str,
    group: &str,
    partitions: i32,
    librdkafka: &[(String, String)],
) -> String {
    let mut extra = String::new();
    for (k, v) in librdkafka {
        extra.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    format!(
        r#"[kafka]
bootstrap = "{bootstrap}"
topic_prefix = "{prefix}"
scanner_group = "{group}"

[kafka.partitions]
scan_requests = {partitions}
verdicts = {partitions}
verdict_cache = {partitions}
events = 1

[kafka.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
{extra}"#
    )
}

impl KafkaRig {
    /// Creates the topics and starts the scanner services (unless they
    /// run already), each bounded in time.
    pub fn start(spec: &KafkaSpec, work: &Path, portcullis: &Path) -> Result<Self> {
        if !is_loopback(&spec.bootstrap) {
            return Err(Error::flag(
                "bootstrap",
                format!(
                    "`{}`: load tests talk to a broker on this machine only (127.0.0.1, ::1, localhost)",
                    spec.bootstrap
                ),
            ));
        }
        let (prefix, ours) = match &spec.scanners_at {
            Some(p) => (p.clone(), false),
            None => {
                let run = uuid::Uuid::now_v7().simple().to_string();
                (format!("loadtest-{}", &run[run.len() - 12..]), true)
            }
        };
        let group = spec
            .scanner_group
            .clone()
            .unwrap_or_else(|| format!("{prefix}.scanners"));
        let section = section_text(
            &spec.bootstrap,
            &prefix,
            &group,
            spec.partitions,
            &spec.librdkafka,
        );
        let settings = ConfigFile::parse(&section)
            .map_err(|e| Error::kafka("the [kafka] section", e))?
            .build("loadtest [kafka]", Overrides::default())
            .map_err(|e| Error::kafka("the [kafka] section", e))?
            .kafka
            .ok_or_else(|| Error::kafka("the [kafka] section", "missing"))?;
        if ours {
            let s = Arc::clone(&settings);
            block_on_thread(async move { kafka::ensure_topics(&s).await })?
                .map_err(|e| Error::kafka(format!("creating the topics under {prefix}"), e))?;
        }
        let lag_probe: BaseConsumer = kafka::clients::base_config(&settings, "loadtest-lag")
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| Error::kafka("creating the lag probe", e))?;
        let mut rig = Self {
            params: KafkaParams {
                bootstrap: spec.bootstrap.clone(),
                topic_prefix: prefix.clone(),
                scanner_group: group,
                scanners: if ours { spec.scanners } else { 0 },
                scanners_started: ours,
                partitions: spec.partitions,
            },
            settings,
            section,
            services: vec![],
            created_topics: ours,
            keep_topics: spec.keep_topics,
            lag_probe,
            at_start: std::sync::Mutex::new(vec![]),
        };
        if ours {
            // On error the rig drops: its Drop stops what started.
            rig.start_services(spec, work, portcullis)?;
        }
        Ok(rig)
    }

    fn start_services(&mut self, spec: &KafkaSpec, work: &Path, portcullis: &Path) -> Result<()> {
        let config = work.join("scanner.toml");
        let text = format!(
            "[scan]\nthreads = {}\n\n{}",
            spec.scanner_threads, self.section
        );
        std::fs::write(&config, text).ctx(|| format!("writing {}", config.display()))?;
        let mut readies = vec![];
        for i in 1..=spec.scanners.max(1) {
            let instance = format!("{}-s{i}", self.params.topic_prefix);
            let ready = work.join(format!("{instance}.ready"));
            let log = work.join(format!("{instance}.log"));
            let child = die_with_parent(&mut Command::new(portcullis))
                .args([
                    "--log",
                    "info",
                    "scanner",
                    "--instance",
                    &instance,
                    "--config",
                ])
                .arg(&config)
                .arg("--ready-file")
                .arg(&ready)
                .env_remove("PORTCULLIS_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).ctx(|| format!("creating {}", log.display()))?)
                .spawn()
                .ctx(|| format!("starting {}", portcullis.display()))?;
            self.services.push(Service {
                instance,
                child,
                log,
            });
            readies.push(ready);
        }
        // Ready together (each joins the group), within a bound.
        let t = Instant::now();
        loop {
            let mut all = true;
            for (s, ready) in self.services.iter_mut().zip(&readies) {
                if let Ok(Some(status)) = s.child.try_wait() {
                    return Err(Error::kafka(
                        format!("scanner service {}", s.instance),
                        format!(
                            "exited before it was ready: {status}{}",
                            log_tail(Some(&s.log), 20)
                        ),
                    ));
                }
                all &= ready.exists();
            }
            if all {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err(Error::kafka(
                    "scanner services",
                    "not ready after 60 s".to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Marks the start of the measured target (CPU is counted from here).
    pub fn mark_start(&self) {
        let now: Vec<Usage> = self
            .services
            .iter()
            .map(|s| usage_of(s.child.id()).unwrap_or_default())
            .collect();
        if let Ok(mut a) = self.at_start.lock() {
            *a = now;
        }
    }

    /// Scanner usage since [`mark_start`](Self::mark_start).
    pub fn scanner_reports(&self) -> Vec<ScannerReport> {
        let at_start = self.at_start.lock().map(|a| a.clone()).unwrap_or_default();
        self.services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let now = usage_of(s.child.id()).unwrap_or_default();
                let u = now.since(at_start.get(i).copied().unwrap_or_default());
                ScannerReport {
                    instance: s.instance.clone(),
                    pid: s.child.id(),
                    cpu_s: u.cpu_s,
                    peak_rss_kib: u.peak_rss_kib,
                    scanned: None,
                    exit: String::new(),
                }
            })
            .collect()
    }

    /// The scanner group's lag on the scan-requests topic: for every
    /// partition, high watermark minus the committed offset (the low
    /// watermark where nothing is committed yet).
    pub fn lag(&self) -> Result<u64> {
        lag_of(
            &self.lag_probe,
            &self.settings.topics.name(Topic::ScanRequests),
        )
    }

    /// Samples the lag every `every` on a thread until stopped.
    pub fn sample_lag(self: &Arc<Self>, every: Duration) -> LagSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (rig, flag) = (Arc::clone(self), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = vec![];
            while !flag.load(Ordering::Relaxed) {
                if let Ok(lag) = rig.lag() {
                    out.push(LagSample {
                        t_s: t0.elapsed().as_secs_f64(),
                        lag,
                    });
                }
                let next = Instant::now() + every;
                while Instant::now() < next && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            out
        });
        LagSampler { stop, handle }
    }

    /// Stops the services (reporting how, and what they scanned) and
    /// deletes the topics we created.
    pub fn stop(mut self, reports: &mut [ScannerReport]) {
        for s in self.services.drain(..) {
            let Service {
                instance,
                mut child,
                log,
            } = s;
            let (exit, _) = stop_child(&mut child, Duration::from_secs(15));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(r) = reports.iter_mut().find(|r| r.instance == instance) {
                r.exit = exit;
                r.scanned = last_field(&text, "scanned");
            }
        }
        self.delete_topics();
    }

    /// Stops a shared rig once every other holder (lag samplers) is done,
    /// filling in the portcullis target's scanner reports.
    pub fn stop_shared(rig: Arc<Self>, targets: &mut [TargetRun]) {
        let mut scanners = targets
            .iter_mut()
            .find(|t| t.name == TargetName::Portcullis)
            .map(|t| std::mem::take(&mut t.scanners))
            .unwrap_or_default();
        // Otherwise the last holder's drop stops it.
        if let Ok(rig) = Arc::try_unwrap(rig) {
            rig.stop(&mut scanners);
        }
        if let Some(t) = targets
            .iter_mut()
            .find(|t| t.name == TargetName::Portcullis)
        {
            t.scanners = scanners;
        }
    }

    fn delete_topics(&mut self) {
        if !self.created_topics || self.keep_topics {
            return;
        }
        self.created_topics = false;
        let settings = Arc::clone(&self.settings);
        let _ = block_on_thread(async move {
            use rdkafka::admin::AdminOptions;
            let Ok(admin) = kafka::admin_client(&settings, "loadtest-cleanup") else {
                return;
            };
            let mut names: Vec<String> = vec![];
            for t in Topic::ALL {
                names.push(settings.topics.name(t));
                names.push(settings.topics.dlq(t));
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
            let _ = tokio::time::timeout(
                BROKER_TIMEOUT + Duration::from_secs(5),
                admin.delete_topics(&refs, &opts),
            )
            .await;
            let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
        });
    }
}

impl Drop for KafkaRig {
    fn drop(&mut self) {
        for s in &mut self.services {
            let _ = stop_child(&mut s.child, Duration::from_secs(15));
        }
        self.delete_topics();
    }
}

fn lag_of(c: &BaseConsumer, topic: &str) -> Result<u64> {
    let md = c
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .map_err(|e| Error::kafka(format!("metadata of {topic}"), e))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = c
        .committed_offsets(tpl, BROKER_TIMEOUT)
        .map_err(|e| Error::kafka(format!("committed offsets on {topic}"), e))?;
    let mut lag = 0u64;
    for p in partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, BROKER_TIMEOUT)
            .map_err(|e| Error::kafka(format!("watermarks of {topic}/{p}"), e))?;
        let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        lag += u64::try_from(high.saturating_sub(at)).unwrap_or(0);
    }
    Ok(lag)
}

/// A running lag sampler.
#[derive(Debug)]
pub struct LagSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<LagSample>>,
}

impl LagSampler {
    /// Stops sampling; the samples, with the final lag measured now.
    pub fn finish(self, rig: &KafkaRig) -> KafkaLag {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().unwrap_or_default();
        let lag_final = rig
            .lag()
            .ok()
            .or_else(|| samples.last().map(|s| s.lag))
            .unwrap_or(0);
        KafkaLag {
            lag_max: samples
                .iter()
                .map(|s| s.lag)
                .max()
                .unwrap_or(0)
                .max(lag_final),
            lag_final,
            samples,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_brokers_are_accepted() {
        assert!(is_loopback("127.0.0.1:9092"));
        assert!(is_loopback("localhost:9092,127.0.0.2:9093"));
        assert!(is_loopback("[::1]:9092"));
        assert!(!is_loopback("10.0.0.1:9092"));
        assert!(!is_loopback("127.0.0.1:9092,kafka.example:9092"));
        assert!(!is_loopback(""));
    }

    #[test]
    fn fields_are_read_from_coloured_log_lines() {
        let plain = "INFO portcullis: scanner service stopped scanned=1234 dead_lettered=0";
        assert_eq!(last_field(plain, "scanned"), Some(1234));
        assert_eq!(last_field(plain, "dead_lettered"), Some(0));
        let coloured =
            "\u{1b}[32m INFO\u{1b}[0m \u{1b}[3mscanned\u{1b}[0m\u{1b}[2m=\u{1b}[0m77 \u{1b}[3mrescanned\u{1b}[0m\u{1b}[2m=\u{1b}[0m5";
        assert_eq!(last_field(coloured, "scanned"), Some(77));
        assert_eq!(last_field("nothing here", "scanned"), None);
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m"), "red");
    }

    #[test]
    fn the_section_is_a_valid_kafka_config() {
        let text = section_text(
            "127.0.0.1:9092",
            "loadtest-x",
            "loadtest-x-scanners",
            3,
            &[("linger.ms".into(), "0".into())],
        );
        let s = ConfigFile::parse(&text)
            .unwrap()
            .build("t", Overrides::default())
            .unwrap()
            .kafka
            .unwrap();
        assert_eq!(s.topics.prefix(), "loadtest-x");
        assert_eq!(s.scanner_group, "loadtest-x-scanners");
        assert_eq!(s.partitions.scan_requests, 3);
        assert_eq!(s.librdkafka["linger.ms"], "0");
    }
}
