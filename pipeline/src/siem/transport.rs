//! The syslog connection: UDP, TCP or TLS, blocking, every connect and
//! write bounded by the configured timeout.
//!
//! [`SyslogSink::send`] writes a batch of messages and flushes it; any
//! error drops the connection, and the next call connects again. The
//! caller (the exporter) commits its Kafka transaction only after `send`
//! returned `Ok`, so every committed event was written at least once.
//!
//! Before each batch on TCP/TLS the sink checks whether the collector has
//! closed the connection (a syslog receiver never sends anything, so a
//! readable socket means EOF, an error or a TLS close): it reconnects
//! first rather than writing into a dead connection.
//!
//! Run it on a blocking thread (`tokio::task::spawn_blocking`).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVersion};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use super::config::{SyslogSettings, SyslogTarget, Transport};
use super::rfc5424;

/// Errors of setting up TLS, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SinkSetupError {
    #[error("syslog TLS: {what} `{file}`: {source}")]
    File {
        what: &'static str,
        file: String,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("syslog TLS: reading `{file}`: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("syslog TLS: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

/// A syslog destination and its connection, if one is open.
pub struct SyslogSink {
    settings: SyslogSettings,
    tls: Option<SslConnector>,
    conn: Option<Conn>,
    /// Messages cut to fit a datagram.
    truncated: u64,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("target", &self.settings.target)
            .field("connected", &self.conn.is_some())
            .field("truncated", &self.truncated)
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// Loads the TLS files (for `tls://`); connects lazily.
    pub fn new(settings: SyslogSettings) -> Result<Self, SinkSetupError> {
        let tls = match settings.target.transport {
            Transport::Tls => Some(tls_connector(&settings)?),
            Transport::Udp | Transport::Tcp => None,
        };
        Ok(Self {
            settings,
            tls,
            conn: None,
            truncated: 0,
        })
    }

    pub fn target(&self) -> &SyslogTarget {
        &self.settings.target
    }

    /// Messages cut to fit a datagram so far.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Connects now (to fail early at start); `send` connects anyway.
    pub fn connect(&mut self) -> io::Result<()> {
        self.drop_if_closed();
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        Ok(())
    }

    /// Writes every message (RFC 5424, unframed) and flushes: one datagram
    /// each over UDP, octet-counted over TCP and TLS. On an error the
    /// connection is dropped; the next call reconnects.
    pub fn send(&mut self, messages: &[Vec<u8>]) -> io::Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.connect()?;
        let result = self.write_all(messages);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn write_all(&mut self, messages: &[Vec<u8>]) -> io::Result<()> {
        let max = self.settings.max_datagram;
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        match conn {
            Conn::Udp(s) => {
                for m in messages {
                    let mut m = m.clone();
                    if rfc5424::truncate(&mut m, max) {
                        self.truncated += 1;
                    }
                    s.send(&m)?;
                }
                Ok(())
            }
            Conn::Tcp(s) => write_framed(s, messages),
            Conn::Tls(s) => write_framed(s.as_mut(), messages),
        }
    }

    /// Drops a TCP/TLS connection the collector has closed.
    fn drop_if_closed(&mut self) {
        let tcp = match &self.conn {
            Some(Conn::Tcp(s)) => s,
            Some(Conn::Tls(s)) => s.get_ref(),
            Some(Conn::Udp(_)) | None => return,
        };
        if readable_or_broken(tcp) {
            tracing::info!(target = %self.settings.target, "syslog collector closed the connection; reconnecting");
            self.conn = None;
        }
    }

    fn open(&self) -> io::Result<Conn> {
        let t = &self.settings.target;
        let timeout = self.settings.timeout;
        let addrs = resolve(&t.host, t.port, timeout)?;
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: the host has no address", t.host),
        );
        for addr in addrs {
            let conn = match t.transport {
                Transport::Udp => udp(addr, timeout).map(Conn::Udp),
                Transport::Tcp => tcp(addr, timeout).map(Conn::Tcp),
                Transport::Tls => tcp(addr, timeout).and_then(|s| self.handshake(s)),
            };
            match conn {
                Ok(c) => {
                    tracing::info!(target = %t, %addr, "syslog connected");
                    return Ok(c);
                }
                Err(e) => last = e,
            }
        }
        Err(io::Error::new(last.kind(), format!("{t}: {last}")))
    }

    fn handshake(&self, tcp: TcpStream) -> io::Result<Conn> {
        let Some(connector) = &self.tls else {
            return Err(io::Error::other("no TLS context"));
        };
        let config = connector.configure().map_err(io::Error::other)?;
        // Verifies the certificate chain and that it names the host (an
        // IP address is checked against the IP SANs).
        let stream = config
            .connect(&self.settings.target.host, tcp)
            .map_err(|e| io::Error::other(format!("TLS handshake: {e}")))?;
        Ok(Conn::Tls(Box::new(stream)))
    }
}

/// The addresses of `host`, within `timeout`. An IP literal needs no
/// lookup. A name is looked up on a thread of its own (getaddrinfo cannot
/// be cancelled): past the timeout the caller gets `TimedOut` and the
/// thread finishes on its own, bounded by the resolver's own timeouts.
fn resolve(host: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("syslog-resolve".into())
        .spawn(move || {
            let r = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        })?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|e| io::Error::new(e.kind(), format!("looking up {host}: {e}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("looking up {host}: no answer within {timeout:?}"),
        )),
    }
}

fn write_framed<W: Write>(w: &mut W, messages: &[Vec<u8>]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
    for m in messages {
        rfc5424::octet_counted(m, &mut buf);
    }
    w.write_all(&buf)?;
    w.flush()
}

fn udp(addr: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

fn tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// True when a read would not block: EOF, an error, or bytes the collector
/// should never have sent (a TLS close_notify, for one).
fn readable_or_broken(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let r = s.peek(&mut byte);
    let _ = s.set_nonblocking(false);
    !matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn tls_connector(s: &SyslogSettings) -> Result<SslConnector, SinkSetupError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    if let Some(ca) = &s.ca {
        // Only this CA: the system's trust store is not consulted.
        let pem = std::fs::read(ca).map_err(|source| SinkSetupError::Read {
            file: ca.display().to_string(),
            source,
        })?;
        let file_err = |source| SinkSetupError::File {
            what: "CA certificates",
            file: ca.display().to_string(),
            source,
        };
        let certs = X509::stack_from_pem(&pem).map_err(file_err)?;
        let mut store = X509StoreBuilder::new()?;
        for c in certs {
            store.add_cert(c).map_err(file_err)?;
        }
        b.set_cert_store(store.build());
    }
    if let Some((cert, key)) = &s.client {
        let named = |what: &'static str, file: &Path| {
            let file = file.display().to_string();
            move |source| SinkSetupError::File { what, file, source }
        };
        b.set_certificate_chain_file(cert)
            .map_err(named("client certificate", cert))?;
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(named("client key", key))?;
        b.check_private_key()
            .map_err(named("client key (does not match the certificate)", key))?;
    }
    Ok(b.build())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::siem::config::Facility;
    use std::io::{BufRead, Read};
    use std::net::TcpListener;

    fn settings(url: &str) -> SyslogSettings {
        SyslogSettings {
            target: url.parse().unwrap(),
            facility: Facility::Local4,
            ca: None,
            client: None,
            max_datagram: 480,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn addresses_are_resolved_within_the_timeout() {
        let t = Duration::from_secs(5);
        assert_eq!(
            resolve("127.0.0.1", 514, t).unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], 514))]
        );
        assert_eq!(
            resolve("[::1]", 6514, t).unwrap(),
            vec![SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 6514))]
        );
        // /etc/hosts, through the lookup thread.
        let local = resolve("localhost", 514, t).unwrap();
        assert!(!local.is_empty());
        assert!(local
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 514));
        // A name that cannot resolve fails and says which.
        let e = resolve("no-such-host.invalid", 514, t).unwrap_err();
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
    }

    #[test]
    fn tcp_frames_by_octet_count_and_reconnects_after_a_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sink = SyslogSink::new(settings(&format!("tcp://127.0.0.1:{port}"))).unwrap();
        sink.send(&[b"<1>1 a".to_vec(), b"<1>1 bc".to_vec()])
            .unwrap();
        let (mut first, _) = listener.accept().unwrap();
        let mut got = vec![0u8; 17];
        first.read_exact(&mut got).unwrap();
        assert_eq!(got, b"6 <1>1 a7 <1>1 bc");
        drop(first);
        std::thread::sleep(Duration::from_millis(50));
        sink.send(&[b"x".to_vec()]).unwrap();
        let (second, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(second)
            .take(3)
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "1 x");
    }

    #[test]
    fn udp_sends_one_datagram_per_message_cut_to_size() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = rx.local_addr().unwrap().port();
        let mut sink = SyslogSink::new(settings(&format!("udp://127.0.0.1:{port}"))).unwrap();
        sink.send(&[b"one".to_vec(), vec![b'x'; 600]]).unwrap();
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        assert_eq!(rx.recv(&mut buf).unwrap(), 480);
        assert_eq!(sink.truncated(), 1);
    }

    #[test]
    fn a_refused_connection_is_an_error_naming_the_target() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut sink = SyslogSink::new(settings(&format!("tcp://127.0.0.1:{port}"))).unwrap();
        let err = sink.send(&[b"x".to_vec()]).unwrap_err().to_string();
        assert!(err.contains(&format!("tcp://127.0.0.1:{port}")), "{err}");
    }

    #[test]
    fn tls_files_are_checked_at_setup() {
        let mut s = settings("tls://localhost:6514");
        s.ca = Some("/nonexistent/ca.pem".into());
        let err = SyslogSink::new(s).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
