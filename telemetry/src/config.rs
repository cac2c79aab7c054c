//! `[telemetry]` of the configuration file, validated at load.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// The listener of `/metrics`, `/healthz` and `/readyz`: `"PORT"`
    /// binds 127.0.0.1:PORT; `"HOST:PORT"` binds that address. Unset: no
    /// listener (and no metrics kept).
    pub metrics_listen: Option<String>,
    /// OpenTelemetry traces over OTLP; off unless `enabled`.
    #[serde(default)]
    pub traces: TracesSection,
}

/// `[telemetry.traces]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesSection {
    #[serde(default)]
    pub enabled: bool,
    /// The OTLP receiver. Default: `http://127.0.0.1:4317` for gRPC,
    /// `http://127.0.0.1:4318/v1/traces` for HTTP.
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http` (HTTP/protobuf).
    #[serde(default)]
    pub protocol: Protocol,
    /// Share of new traces kept, 0.0 to 1.0 (default 1.0). A trace started
    /// elsewhere (a scan request, an exported event) follows the sampling
    /// decision in its `traceparent`.
    #[serde(default = "d_ratio")]
    pub sampling_ratio: f64,
    /// `service.name`. Default: `portcullis-agent`, `portcullis-scanner` or
    /// `portcullis-siem-export`.
    pub service_name: Option<String>,
    /// Extra resource attributes, e.g. `"deployment.environment.name" =
    /// "prod"`. `host.name`, `service.instance.id` and `portcullis.node_id`
    /// are set from the node.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// The longest spans wait in memory before they are sent (default 1s);
    /// past 2,048 queued spans new ones are dropped (and counted by the SDK).
    #[serde(default = "d_export_interval")]
    pub export_interval: String,
}

impl Default for TracesSection {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            protocol: Protocol::default(),
            sampling_ratio: d_ratio(),
            service_name: None,
            resource: BTreeMap::new(),
            export_interval: d_export_interval(),
        }
    }
}

fn d_ratio() -> f64 {
    1.0
}
fn d_export_interval() -> String {
    "1s".into()
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Grpc,
    Http,
}

/// `[telemetry]`, validated.
#[derive(Clone, Debug, Default)]
pub struct TelemetrySettings {
    pub metrics_listen: Option<SocketAddr>,
    pub traces: Option<TracesSettings>,
}

/// `[telemetry.traces]`, validated (present only when enabled).
#[derive(Clone, Debug)]
pub struct TracesSettings {
    pub endpoint: String,
    pub protocol: Protocol,
    pub sampling_ratio: f64,
    pub service_name: Option<String>,
    pub resource: BTreeMap<String, String>,
    pub export_interval: std::time::Duration,
}

/// Parses a listen address: `PORT`, `:PORT` (both 127.0.0.1) or
/// `HOST:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{s}` is not PORT or HOST:PORT (e.g. \"9771\", \"127.0.0.1:9771\", \"[::1]:9771\")"
        )
    })
}

impl TelemetrySection {
    /// Validates; errors are (field, message).
    pub fn build(self) -> Result<TelemetrySettings, (String, String)> {
        let metrics_listen = match &self.metrics_listen {
            None => None,
            Some(s) => Some(parse_listen(s).map_err(|m| ("telemetry.metrics_listen".into(), m))?),
        };
        let t = self.traces;
        let traces = if t.enabled {
            if !(0.0..=1.0).contains(&t.sampling_ratio) || t.sampling_ratio.is_nan() {
                return Err((
                    "telemetry.traces.sampling_ratio".into(),
                    format!("{} is not between 0.0 and 1.0", t.sampling_ratio),
                ));
            }
            let endpoint = t.endpoint.unwrap_or_else(|| {
                match t.protocol {
                    Protocol::Grpc => "http://127.0.0.1:4317",
                    Protocol::Http => "http://127.0.0.1:4318/v1/traces",
                }
                .into()
            });
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err((
                    "telemetry.traces.endpoint".into(),
                    format!("`{endpoint}` is not an http:// or https:// URL"),
                ));
            }
            if let Some(n) = &t.service_name {
                if n.trim().is_empty() {
                    return Err((
                        "telemetry.traces.service_name".into(),
                        "must not be empty".into(),
                    ));
                }
            }
            for k in t.resource.keys() {
                if k.trim().is_empty() {
                    return Err((
                        "telemetry.traces.resource".into(),
                        "an attribute name is empty".into(),
                    ));
                }
            }
            let export_interval = humantime::parse_duration(&t.export_interval)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    (
                        "telemetry.traces.export_interval".into(),
                        format!(
                            "`{}` is not a duration above zero (e.g. \"1s\")",
                            t.export_interval
                        ),
                    )
                })?;
            Some(TracesSettings {
                endpoint,
                protocol: t.protocol,
                sampling_ratio: t.sampling_ratio,
                service_name: t.service_name,
                resource: t.resource,
                export_interval,
            })
        } else {
            None
        };
        Ok(TelemetrySettings {
            metrics_listen,
            traces,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<TelemetrySettings, (String, String)> {
        toml::from_str::<TelemetrySection>(text).unwrap().build()
    }

    #[test]
    fn off_by_default() {
        let s = build("").unwrap();
        assert!(s.metrics_listen.is_none());
        assert!(s.traces.is_none());
    }

    #[test]
    fn a_port_alone_binds_loopback() {
        for v in ["9771", ":9771", "127.0.0.1:9771"] {
            let s = build(&format!("metrics_listen = \"{v}\"")).unwrap();
            assert_eq!(
                s.metrics_listen.unwrap().to_string(),
                "127.0.0.1:9771",
                "{v}"
            );
        }
        let s = build("metrics_listen = \"0.0.0.0:9771\"").unwrap();
        assert_eq!(s.metrics_listen.unwrap().to_string(), "0.0.0.0:9771");
    }

    #[test]
    fn errors_name_the_field() {
        let (f, m) = build("metrics_listen = \"localhost\"").unwrap_err();
        assert_eq!(f, "telemetry.metrics_listen");
        assert!(m.contains("localhost"), "{m}");
        let (f, _) = build("[traces]\nenabled = true\nsampling_ratio = 1.5").unwrap_err();
        assert_eq!(f, "telemetry.traces.sampling_ratio");
        let (f, _) = build("[traces]\nenabled = true\nendpoint = \"127.0.0.1:4317\"").unwrap_err();
        assert_eq!(f, "telemetry.traces.endpoint");
        let (f, _) = build("[traces]\nenabled = true\nexport_interval = \"0s\"").unwrap_err();
        assert_eq!(f, "telemetry.traces.export_interval");
        assert!(toml::from_str::<TelemetrySection>("[traces]\nprotocol = \"udp\"").is_err());
    }

    #[test]
    fn trace_defaults_follow_the_protocol() {
        let s = build("[traces]\nenabled = true").unwrap().traces.unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4317");
        assert_eq!(s.sampling_ratio, 1.0);
        let s = build("[traces]\nenabled = true\nprotocol = \"http\"")
            .unwrap()
            .traces
            .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4318/v1/traces");
        // Written but not enabled: off.
        assert!(build("[traces]\nsampling_ratio = 0.5")
            .unwrap()
            .traces
            .is_none());
    }
}
