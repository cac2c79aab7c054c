//! The `[siem]` section of the config file, and its validated form.
//!
//! ```toml
//! [siem]
//! group = "portcullis.siem-export"   # default: <kafka.topic_prefix>.siem-export
//! ecs = true                         # <prefix>.siem.ecs.v1
//! ocsf = false                       # <prefix>.siem.ocsf.v1
//! partitions = 12                    # of the SIEM topics; default kafka.partitions.events
//!
//! [siem.syslog]                      # CEF over syslog (RFC 5424)
//! url = "tls://siem.example.com:6514"  # udp:// | tcp:// | tls://; default ports 514, 514, 6514
//! facility = "local4"
//! ca = "/etc/portcullis/siem-ca.pem"   # tls: verify the collector against this CA
//! client_cert = "/etc/portcullis/siem-client.pem"  # tls: optional client certificate
//! client_key = "/etc/portcullis/siem-client.key"
//! max_datagram = 2048                # udp: longer messages are cut to this many bytes
//! timeout = "10s"                    # every lookup, connect and write
//! ```
//!
//! Errors name the field as written in the file (`siem.syslog.url`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::kafka::config::MAX_PARTITIONS;
use crate::kafka::{KafkaSettings, SiemTopic};

/// The smallest `max_datagram`: every syslog receiver must accept 480
/// bytes (RFC 5426 §3.2).
pub const MIN_DATAGRAM: usize = 480;
/// The largest `max_datagram`: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// `[siem]` as written. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemSection {
    /// Consumer group on the events topic. Default
    /// "<kafka.topic_prefix>.siem-export".
    pub group: Option<String>,
    /// Produce ECS JSON to "<prefix>.siem.ecs.v1" (default true).
    #[serde(default = "d_true")]
    pub ecs: bool,
    /// Produce OCSF JSON to "<prefix>.siem.ocsf.v1" (default false).
    #[serde(default)]
    pub ocsf: bool,
    /// Partitions of the SIEM topics the exporter creates. Default: those
    /// of the events topic (`kafka.partitions.events`).
    pub partitions: Option<i32>,
    /// CEF over syslog to a collector. Absent: no syslog.
    pub syslog: Option<SyslogSection>,
}

impl Default for SiemSection {
    /// The same values as an empty `[siem]` section.
    fn default() -> Self {
        Self {
            group: None,
            ecs: true,
            ocsf: false,
            partitions: None,
            syslog: None,
        }
    }
}

/// `[siem.syslog]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSection {
    /// `udp://host:port`, `tcp://host:port` or `tls://host:port`.
    pub url: String,
    /// Syslog facility of every message (default `local4`).
    #[serde(default)]
    pub facility: Facility,
    /// TLS: the CA certificates (PEM) the collector's certificate must
    /// chain to. Default: the system's trust store.
    pub ca: Option<PathBuf>,
    /// TLS: a client certificate chain (PEM), for collectors that
    /// authenticate their senders. Needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// TLS: the private key (PEM) of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// UDP: the largest datagram; longer messages are cut (default 2048).
    #[serde(default = "d_max_datagram")]
    pub max_datagram: usize,
    /// Bound of every host lookup, connect and write (default "10s").
    #[serde(default = "d_timeout")]
    pub timeout: String,
}

impl SyslogSection {
    /// A section with `url` and every default.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            facility: Facility::default(),
            ca: None,
            client_cert: None,
            client_key: None,
            max_datagram: d_max_datagram(),
            timeout: d_timeout(),
        }
    }
}

fn d_true() -> bool {
    true
}
fn d_max_datagram() -> usize {
    2048
}
fn d_timeout() -> String {
    "10s".into()
}

/// Validated `[siem]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemSettings {
    pub group: String,
    /// The SIEM topics to produce (possibly none: syslog only).
    pub topics: Vec<SiemTopic>,
    pub partitions: i32,
    pub syslog: Option<SyslogSettings>,
}

/// Validated `[siem.syslog]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    pub target: SyslogTarget,
    pub facility: Facility,
    pub ca: Option<PathBuf>,
    /// Certificate and key, both or neither.
    pub client: Option<(PathBuf, PathBuf)>,
    pub max_datagram: usize,
    pub timeout: Duration,
}

/// The transport of the syslog stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One message per datagram (RFC 5426).
    Udp,
    /// Octet-counted framing (RFC 6587 §3.4.1).
    Tcp,
    /// TLS over TCP, octet-counted (RFC 5425).
    Tls,
}

impl Transport {
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The port when the URL has none: 514 (RFC 5426, and the usual TCP
    /// port), 6514 (RFC 5425).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 514,
            Transport::Tls => 6514,
        }
    }
}

/// Where the syslog stream goes: `udp://host:port` and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: Transport,
    /// A host name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.transport.scheme();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for SyslogTarget {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("`{url}` is not udp://host:port, tcp://host:port or tls://host:port")
        })?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "`{url}`: unknown scheme `{other}` (udp, tcp or tls)"
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!("`{url}`: only host and port may follow the scheme"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: unclosed `[`"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("`{url}`: expected `:port` after `]`"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => {
                    return Err(format!(
                        "`{url}`: write an IPv6 address in brackets, e.g. udp://[::1]:514"
                    ))
                }
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}`: the host is missing"));
        }
        let port = match port {
            None => transport.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("`{url}`: `{p}` is not a port (1-65535)")),
            },
        };
        Ok(SyslogTarget {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

/// Syslog facilities (RFC 5424 §6.2.1), by their usual names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    /// 13, "log audit".
    Audit,
    /// 14, "log alert".
    Alert,
    /// 15, the second clock daemon.
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    /// The default: a local facility, so that a relay's stock rules (which
    /// send `auth`/`authpriv` to the host's own auth log) leave the stream
    /// alone, and the collector can route it by facility.
    #[default]
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility's number.
    pub fn code(self) -> u8 {
        self as u8
    }
}

type Invalid = (String, String);

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    (field.to_string(), message.into())
}

impl SiemSection {
    /// Validates the section against the `[kafka]` settings it reads with.
    /// Errors are `(field, message)`, the field as written in the file.
    pub fn build(self, kafka: &KafkaSettings) -> Result<SiemSettings, Invalid> {
        let group = self
            .group
            .unwrap_or_else(|| format!("{}.siem-export", kafka.topics.prefix()));
        if group.trim().is_empty() {
            return Err(invalid("siem.group", "must not be empty"));
        }
        let partitions = self.partitions.unwrap_or(kafka.partitions.events);
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(invalid(
                "siem.partitions",
                format!("{partitions} is not in 1..={MAX_PARTITIONS}"),
            ));
        }
        let topics: Vec<SiemTopic> = [(SiemTopic::Ecs, self.ecs), (SiemTopic::Ocsf, self.ocsf)]
            .into_iter()
            .filter_map(|(t, on)| on.then_some(t))
            .collect();
        let syslog = self.syslog.map(SyslogSection::build).transpose()?;
        if topics.is_empty() && syslog.is_none() {
            return Err(invalid(
                "siem",
                "nothing to export: turn on ecs or ocsf, or set syslog.url",
            ));
        }
        Ok(SiemSettings {
            group,
            topics,
            partitions,
            syslog,
        })
    }
}

impl SyslogSection {
    fn build(self) -> Result<SyslogSettings, Invalid> {
        let target: SyslogTarget = self
            .url
            .trim()
            .parse()
            .map_err(|m| invalid("siem.syslog.url", m))?;
        let tls = target.transport == Transport::Tls;
        for (field, file) in [
            ("siem.syslog.ca", &self.ca),
            ("siem.syslog.client_cert", &self.client_cert),
            ("siem.syslog.client_key", &self.client_key),
        ] {
            let Some(path) = file else { continue };
            if !tls {
                return Err(invalid(
                    field,
                    format!("only for tls:// (the url is {})", target.transport.scheme()),
                ));
            }
            if let Err(e) = std::fs::File::open(path) {
                return Err(invalid(
                    field,
                    format!("cannot read `{}`: {e}", path.display()),
                ));
            }
        }
        let client = match (self.client_cert, self.client_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "siem.syslog.client_key",
                    "must be set with client_cert",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "siem.syslog.client_cert",
                    "must be set with client_key",
                ))
            }
        };
        if !(MIN_DATAGRAM..=MAX_DATAGRAM).contains(&self.max_datagram) {
            return Err(invalid(
                "siem.syslog.max_datagram",
                format!(
                    "{} is not in {MIN_DATAGRAM}..={MAX_DATAGRAM} bytes",
                    self.max_datagram
                ),
            ));
        }
        let timeout = humantime::parse_duration(&self.timeout).map_err(|e| {
            invalid(
                "siem.syslog.timeout",
                format!("`{}` is not a duration (e.g. \"10s\"): {e}", self.timeout),
            )
        })?;
        if timeout.is_zero() {
            return Err(invalid("siem.syslog.timeout", "must be greater than zero"));
        }
        Ok(SyslogSettings {
            target,
            facility: self.facility,
            ca: self.ca,
            client,
            max_datagram: self.max_datagram,
            timeout,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSection;

    fn kafka(prefix: &str) -> KafkaSettings {
        toml::from_str::<KafkaSection>(&format!("topic_prefix = \"{prefix}\""))
            .unwrap()
            .build_with_env(None)
            .unwrap()
    }

    fn build(text: &str) -> Result<SiemSettings, Invalid> {
        toml::from_str::<SiemSection>(text)
            .unwrap()
            .build(&kafka("portcullis"))
    }

    #[test]
    fn defaults() {
        let s = build("").unwrap();
        assert_eq!(s.group, "portcullis.siem-export");
        assert_eq!(s.topics, vec![SiemTopic::Ecs]);
        assert_eq!(s.partitions, 12);
        assert_eq!(s.syslog, None);
        assert_eq!(SiemSection::default(), toml::from_str("").unwrap());
        let s = SiemSection::default().build(&kafka("x")).unwrap();
        assert_eq!(s.group, "x.siem-export");
        let s = build("ocsf = true\n[syslog]\nurl = \"udp://127.0.0.1\"").unwrap();
        assert_eq!(s.topics, vec![SiemTopic::Ecs, SiemTopic::Ocsf]);
        let sys = s.syslog.unwrap();
        assert_eq!(sys.facility, Facility::Local4);
        assert_eq!(sys.facility.code(), 20);
        assert_eq!(sys.max_datagram, 2048);
        assert_eq!(sys.timeout, Duration::from_secs(10));
        assert_eq!(sys.target.port, 514);
    }

    #[test]
    fn urls_parse() {
        let t: SyslogTarget = "tls://siem.example.com".parse().unwrap();
        assert_eq!(
            (t.transport, t.host.as_str(), t.port),
            (Transport::Tls, "siem.example.com", 6514)
        );
        let t: SyslogTarget = "TCP://10.0.0.1:1514/".parse().unwrap();
        assert_eq!((t.transport, t.port), (Transport::Tcp, 1514));
        assert_eq!(t.to_string(), "tcp://10.0.0.1:1514");
        let t: SyslogTarget = "udp://[::1]:5514".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 5514));
        assert_eq!(t.to_string(), "udp://[::1]:5514");
        let t: SyslogTarget = "udp://[fe80::1]".parse().unwrap();
        assert_eq!(t.port, 514);
        for bad in [
            "siem:514",
            "http://x:1",
            "udp://:514",
            "udp://x:0",
            "udp://x:99999",
            "udp://::1:514",
            "tcp://x:1/path",
            "tls://user@x:1",
            "udp://[::1",
        ] {
            assert!(bad.parse::<SyslogTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("group = \" \"", "siem.group"),
            ("partitions = 0", "siem.partitions"),
            ("ecs = false", "siem"),
            ("[syslog]\nurl = \"syslog.example\"", "siem.syslog.url"),
            (
                "[syslog]\nurl = \"tcp://x:1\"\nca = \"/etc/hostname\"",
                "siem.syslog.ca",
            ),
            (
                "[syslog]\nurl = \"tls://x:1\"\nca = \"/nonexistent/ca.pem\"",
                "siem.syslog.ca",
            ),
            (
                "[syslog]\nurl = \"tls://x:1\"\nclient_cert = \"/etc/hostname\"",
                "siem.syslog.client_key",
            ),
            (
                "[syslog]\nurl = \"udp://x:1\"\nmax_datagram = 100",
                "siem.syslog.max_datagram",
            ),
            (
                "[syslog]\nurl = \"udp://x:1\"\ntimeout = \"soon\"",
                "siem.syslog.timeout",
            ),
        ] {
            let (f, m) = build(text).unwrap_err();
            assert_eq!(f, field, "{text:?}: {m}");
        }
        let err =
            toml::from_str::<SiemSection>("[syslog]\nurl = \"udp://x\"\nfacility = \"local9\"")
                .unwrap_err()
                .to_string();
        assert!(err.contains("local9"), "{err}");
        let err = toml::from_str::<SiemSection>("topic = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("topic"), "{err}");
    }

    #[test]
    fn the_config_file_validates_siem_at_load() {
        use crate::config::{ConfigFile, Overrides};
        let load = |text: &str| {
            ConfigFile::parse(text)
                .unwrap()
                .build("f.toml", Overrides::default())
                .map_err(|e| e.to_string())
        };
        let err = load("[siem]\n").unwrap_err();
        assert!(err.starts_with("f.toml: siem: needs a [kafka]"), "{err}");
        let err = load("[kafka]\n[siem.syslog]\nurl = \"udp://x:0\"\n").unwrap_err();
        assert!(err.starts_with("f.toml: siem.syslog.url:"), "{err}");
        let s = load("[kafka]\ntopic_prefix = \"p\"\n[siem]\nocsf = true\n").unwrap();
        let siem = s.siem.unwrap();
        assert_eq!(siem.group, "p.siem-export");
        assert_eq!(siem.topics, vec![SiemTopic::Ecs, SiemTopic::Ocsf]);
        assert!(load("").unwrap().siem.is_none());
    }

    #[test]
    fn facility_codes_follow_rfc5424() {
        assert_eq!(Facility::Kern.code(), 0);
        assert_eq!(Facility::Auth.code(), 4);
        assert_eq!(Facility::Authpriv.code(), 10);
        assert_eq!(Facility::Clock.code(), 15);
        assert_eq!(Facility::Local0.code(), 16);
        assert_eq!(Facility::Local7.code(), 23);
    }
}
