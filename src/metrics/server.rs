//! `--metrics ADDR`: a small HTTP/1 listener answering `GET /metrics` (the
//! registry in the OpenMetrics text format Prometheus scrapes) and
//! `GET /health` (200 `ok`, or 503 while the back end is unreachable, see
//! [`super::healthy`]).
//!
//! It is bounded like the protocol sockets: at most
//! [`MAX_METRICS_CONNECTIONS`] clients at once (more wait in the kernel's
//! backlog), a request head of at most [`MAX_METRICS_REQUEST_BYTES`], and
//! every connection closed after [`METRICS_CONNECTION_TIMEOUT`] whatever
//! the client does. Slow clients cannot keep `/health` out: past
//! [`METRICS_CALM_CONNECTIONS`] open connections, a new one must send its
//! whole head within [`METRICS_BUSY_HEADER_TIMEOUT`] (a monitor sends it
//! in one packet), so the slots turn over faster than slow clients can
//! take them. One request per connection; request bodies are never read.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ListenAddress, ListenSpec, SocketOptions};
use crate::listen::{self, Listener};
use crate::proto::Protocol;
use crate::serve::Accepting;

/// Metrics clients served at once.
pub const MAX_METRICS_CONNECTIONS: usize = 64;
/// Open connections up to which a new one gets [`METRICS_HEADER_TIMEOUT`]
/// for its head; past them, [`METRICS_BUSY_HEADER_TIMEOUT`].
pub const METRICS_CALM_CONNECTIONS: usize = 8;
/// The head timeout of a connection accepted while more than
/// [`METRICS_CALM_CONNECTIONS`] are open.
pub const METRICS_BUSY_HEADER_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest request head (request line and headers) read; hyper's own
/// lower bound for its read buffer. A longer one is answered 431 or the
/// connection closed.
pub const MAX_METRICS_REQUEST_BYTES: usize = 8192;
/// Most request headers read.
pub const MAX_METRICS_HEADERS: usize = 32;
/// A request head must be complete within this time.
pub const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection is closed this long after it was accepted, answered or not.
pub const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound metrics listener.
pub struct MetricsListener {
    listener: Listener,
    /// Where, for the log (`127.0.0.1:9155`, `unix:/run/xcauth/metrics`).
    pub label: String,
}

/// Binds `address`: a TCP address as given (port 0 picks a free port; the
/// label says which), or a Unix socket with the `--socket-*` permissions
/// and owner (a stale socket file is replaced).
pub fn bind(address: &ListenAddress, options: &SocketOptions) -> io::Result<MetricsListener> {
    match address {
        ListenAddress::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("metrics: listen on {addr}: {e}")))?;
            let label = listener.local_addr()?.to_string();
            Ok(MetricsListener {
                listener: Listener::Tcp(listener),
                label,
            })
        }
        ListenAddress::Unix(_) => {
            let spec = ListenSpec {
                protocol: Protocol::Generic,
                address: address.clone(),
                requests: Default::default(),
            };
            let bound = listen::bind(&spec, options)
                .map_err(|e| io::Error::new(e.kind(), format!("metrics: {e}")))?;
            Ok(MetricsListener {
                listener: bound.listener,
                label: bound.label,
            })
        }
    }
}

/// Serves `listener` until `shutdown` (call inside the runtime).
pub fn spawn(listener: MetricsListener, shutdown: CancellationToken) -> io::Result<()> {
    let accepting = Accepting::register(listener.listener)?;
    let label = listener.label;
    if label.starts_with("unix:") {
        info!("metrics at {label} (GET /metrics, GET /health)");
    } else {
        info!("metrics at http://{label}/metrics (and /health)");
    }
    tokio::spawn(accept_loop(accepting, shutdown));
    Ok(())
}

async fn accept_loop(listener: Accepting, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.cancelled() => return,
        };
        let open = MAX_METRICS_CONNECTIONS - slots.available_permits();
        let head = if open > METRICS_CALM_CONNECTIONS {
            METRICS_BUSY_HEADER_TIMEOUT
        } else {
            METRICS_HEADER_TIMEOUT
        };
        match accepted {
            Ok(Stream::Tcp(s)) => {
                tokio::spawn(async move {
                    serve(TokioIo::new(s), head).await;
                    drop(permit);
                });
            }
            Ok(Stream::Unix(s)) => {
                tokio::spawn(async move {
                    serve(TokioIo::new(s), head).await;
                    drop(permit);
                });
            }
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Accepting) -> io::Result<Stream> {
    Ok(match listener {
        Accepting::Tcp(l) => Stream::Tcp(l.accept().await?.0),
        Accepting::Unix(l) => Stream::Unix(l.accept().await?.0),
    })
}

/// One connection, one request, its head within `head`, all within
/// [`METRICS_CONNECTION_TIMEOUT`].
async fn serve<I>(io: I, head: Duration)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(false)
        .max_buf_size(MAX_METRICS_REQUEST_BYTES)
        .max_headers(MAX_METRICS_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(head);
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(respond(request.method(), request.uri().path()))
    });
    let connection = builder.serve_connection(io, service);
    match tokio::time::timeout(METRICS_CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("metrics: connection ended: {e}"),
        Err(_) => debug!("metrics: connection closed after {METRICS_CONNECTION_TIMEOUT:?}"),
    }
}

/// The answer to `method` `path`.
fn respond(method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => (
            StatusCode::OK,
            OPENMETRICS,
            super::metrics().encode().into_bytes(),
        ),
        (&Method::GET | &Method::HEAD, "/health") if super::healthy() => {
            (StatusCode::OK, "text/plain", b"ok\n".to_vec())
        }
        (&Method::GET | &Method::HEAD, "/health") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"back end unreachable\n".to_vec(),
        ),
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            b"GET /metrics or /health\n".to_vec(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"GET only\n".to_vec(),
        ),
    };
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        body
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods() {
        assert_eq!(respond(&Method::GET, "/metrics").status(), StatusCode::OK);
        assert_eq!(
            respond(&Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let metrics = respond(&Method::GET, "/metrics");
        assert_eq!(metrics.headers()[CONTENT_TYPE], OPENMETRICS);
    }
}
