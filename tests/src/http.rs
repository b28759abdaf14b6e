//! HTTP and the Prometheus text format, for tests of the metrics endpoint.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::Netns;

/// `GET target` over HTTP/1.0 to 127.0.0.1:port inside `ns` (the socket is made on a thread
/// that entered the namespace). Returns (status, head, body).
pub fn http_get(
    ns: &Netns,
    port: u16,
    target: &str,
    accept: Option<&str>,
) -> Result<(u16, String, String), String> {
    let request = format!(
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{}\r\n",
        accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default()
    );
    ns.run(move || -> Result<(u16, String, String), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| format!("receive: {e}"))?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP head in {raw:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok((status, head.to_owned(), body.to_owned()))
    })
    .map_err(|e| format!("{e:#}"))?
}

/// The value of the sample `series` (name with labels, as exposed) in a text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
