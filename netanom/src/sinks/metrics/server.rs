//! The `/metrics` endpoint: a minimal HTTP/1.1 server on its own thread (a single-threaded
//! tokio runtime), so a slow scrape never delays the drain and a long sweep never delays a
//! scrape. One request per connection (`Connection: close`); request heads are bounded
//! ([`MAX_REQUEST_BYTES`]), connections are bounded in number and time; anything malformed
//! gets a 4xx answer.
use std::{io, net::SocketAddr, sync::Arc, thread, time::Duration};

use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, oneshot},
};

use super::{
    exposition::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE},
    registry::Metrics,
};

/// Where `netanom run` serves metrics unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9754";
/// The only path served.
pub const PATH: &str = "/metrics";
/// Longest request head (request line and headers) read; longer requests get 431.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection must send its request and take the answer within this time.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint could not be opened.
#[derive(Debug, Error)]
#[error(
    "cannot serve Prometheus metrics on {addr}: {io}. {hint}Choose another address with \
     `--metrics-addr ADDRESS:PORT`, or run without the metrics endpoint (`--no-metrics`)."
)]
pub struct BindError {
    pub addr: SocketAddr,
    /// Already in the message, so not a `source` (which would repeat it).
    pub io: io::Error,
    hint: String,
}

/// Opens the listening socket (before anything is attached, so a busy port fails fast).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let fail = |io: io::Error| {
        let hint = match io.kind() {
            io::ErrorKind::AddrInUse => format!(
                "Another program listens there (perhaps another netanom agent: each needs its own \
                 port); `ss -ltnp 'sport = :{}'` shows which. ",
                addr.port()
            ),
            io::ErrorKind::AddrNotAvailable => format!(
                "{} is not an address of this host (in this network namespace); `ip -br addr` \
                 lists them. ",
                addr.ip()
            ),
            io::ErrorKind::PermissionDenied => "Ports below 1024 need CAP_NET_BIND_SERVICE. ".to_owned(),
            _ => String::new(),
        };
        BindError { addr, io, hint }
    };
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    Ok(listener)
}

/// The metrics server's thread. Dropping it stops the server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `metrics` on `listener` (from [`bind`]) from a thread of its own.
    pub fn start(listener: std::net::TcpListener, metrics: Arc<Metrics>) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _guard = rt.enter();
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("netanom-metrics".into())
            .spawn(move || {
                rt.block_on(serve(listener, metrics, async {
                    let _ = stopped.await;
                }));
            })?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections until `shutdown` completes; each is answered on its own task, at most
/// [`MAX_CONNECTIONS`] at once, each within [`CONNECTION_TIMEOUT`].
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, or the like: say so once, then back off.
                    if !warned {
                        log::warn!("metrics endpoint: accepting a connection failed: {e}");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, handle(stream, &metrics)).await;
        });
    }
}

/// Reads one request head (bounded) and writes the answer.
async fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        if let Some(end) = head_end(&buf) {
            break respond(&buf[..end], metrics);
        }
        if buf.len() >= MAX_REQUEST_BYTES {
            break Response::error(431, "Request Header Fields Too Large", "request head too large\n");
        }
        let want = chunk.len().min(MAX_REQUEST_BYTES - buf.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            // Closed before sending a whole request head.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await
}

/// End of the request head (after the blank line), if it has arrived.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An HTTP response, written with `Connection: close`.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: headers as for GET, no body.
    pub head_only: bool,
    pub allow: bool,
}

impl Response {
    fn error(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
            allow: status == 405,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The answer to one request head: 200 with the metrics for `GET /metrics` (and `HEAD`), 404
/// for any other path, 405 for any other method, 400 for anything that is not HTTP/1.x.
pub fn respond(head: &[u8], metrics: &Metrics) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::error(400, "Bad Request", "bad request\n");
    };
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::error(400, "Bad Request", "bad request\n");
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Response::error(400, "Bad Request", "bad request\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != PATH {
        return Response::error(404, "Not Found", "not found: metrics are served at /metrics\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::error(405, "Method Not Allowed", "method not allowed: use GET\n"),
    };
    let openmetrics = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .any(|(_, v)| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, metrics.openmetrics())
    } else {
        (TEXT_CONTENT_TYPE, metrics.text())
    };
    Response {
        status: 200,
        reason: "OK",
        content_type,
        body,
        head_only,
        allow: false,
    }
}
