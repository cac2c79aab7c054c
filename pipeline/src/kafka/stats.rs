//! librdkafka statistics into `portcullis_kafka_*` gauges.
//!
//! A client whose context holds a [`ClientStats`] gets
//! `statistics.interval.ms` = 5000 (unless `[kafka.librdkafka]` sets it)
//! when metrics are on; librdkafka then hands its statistics to the
//! context every 5 s on its own thread. Labels: `client` is the client's
//! role (a closed set, below), `topic` and `broker` name the cluster's own
//! topics and brokers.

use rdkafka::ClientConfig;
use rdkafka::Statistics;

use portcullis_telemetry::catalog;

/// How often librdkafka reports, when metrics are on.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// The `client` label values.
pub mod role {
    /// The node's producer of scan requests.
    pub const NODE_REQUESTS: &str = "node_requests";
    /// A scanner service's consumer of scan requests.
    pub const SCANNER_REQUESTS: &str = "scanner_requests";
    /// A scanner service's producer of replies.
    pub const SCANNER_REPLIES: &str = "scanner_replies";
    /// A scanner service's producer of shared verdicts.
    pub const SCANNER_SHARED: &str = "scanner_shared_verdicts";
    /// The consumer of a consume-transform-produce loop (`siem-export`'s
    /// reader of the events topic).
    pub const EXPORTER: &str = "exporter";
}

/// One client's statistics sink.
#[derive(Debug, Clone, Copy)]
pub struct ClientStats {
    role: &'static str,
}

impl ClientStats {
    pub fn new(role: &'static str) -> Self {
        Self { role }
    }

    /// Sets the gauges from one report.
    pub fn record(&self, s: &Statistics) {
        let client = self.role;
        metrics::gauge!(catalog::KAFKA_QUEUE.name, "client" => client).set(s.msg_cnt as f64);
        for b in s.brokers.values() {
            // Bootstrap and coordinator pseudo-brokers have no node id.
            if b.nodeid < 0 {
                continue;
            }
            if let Some(rtt) = &b.rtt {
                // librdkafka reports microseconds.
                metrics::gauge!(catalog::KAFKA_RTT.name, "client" => client, "broker" => b.nodename.clone())
                    .set(rtt.avg as f64 / 1e6);
            }
        }
        if s.client_type == "consumer" {
            for (topic, t) in &s.topics {
                // -1 means unknown (no committed offset or end yet).
                let lag: i64 = t
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(|p| p.consumer_lag)
                    .sum();
                metrics::gauge!(catalog::KAFKA_CONSUMER_LAG.name, "client" => client, "topic" => topic.clone())
                    .set(lag as f64);
            }
        }
    }
}

/// Asks librdkafka for statistics when metrics are on and the settings do
/// not say otherwise.
pub fn enable(c: &mut ClientConfig) {
    if portcullis_telemetry::metrics_on() && c.get("statistics.interval.ms").is_none() {
        c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
}
