//! The listener of `/metrics`, `/healthz` and `/readyz`, on the telemetry
//! runtime (its own thread, never the actor system's executor).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;

use crate::health::{Health, Probe};

/// Runs before each render of `/metrics`: sets gauges read from state
/// (journal seq, cache sizes, process metrics).
pub type Collector = Box<dyn Fn() + Send + Sync>;

pub(crate) struct State {
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) health: Arc<Health>,
    pub(crate) collectors: Mutex<Vec<Collector>>,
}

impl State {
    fn respond(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match req.uri().path() {
            "/metrics" => match &self.prometheus {
                Some(p) => {
                    for c in self.collectors.lock().iter() {
                        c();
                    }
                    let mut text = p.render();
                    crate::histogram::render(&mut text);
                    let mut r = Response::new(Full::new(Bytes::from(text)));
                    if let Ok(v) = "text/plain; version=0.0.4; charset=utf-8".parse() {
                        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
                    }
                    r
                }
                None => text(StatusCode::NOT_FOUND, "metrics are off\n".into()),
            },
            "/healthz" => probe(self.health.live()),
            "/readyz" => probe(self.health.ready()),
            _ => text(
                StatusCode::NOT_FOUND,
                "portcullis: /metrics, /healthz, /readyz\n".into(),
            ),
        }
    }
}

fn probe(p: Probe) -> Response<Full<Bytes>> {
    let status = if p.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, format!("{}\n", p.body))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = "text/plain; charset=utf-8".parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Accepts connections until the runtime stops.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "telemetry listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let r = state.respond(&req);
                async move { Ok::<_, Infallible>(r) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "telemetry listener: connection ended");
            }
        });
    }
}

/// Binds at once, so that a taken port is an error at start.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
