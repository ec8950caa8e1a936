//! Raw TCP clients: what a slow, silent or half-sending client does.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;

/// A connection to the server at `url` (`http://host:port`).
pub(crate) async fn raw_connect(url: &str) -> TcpStream {
    TcpStream::connect(url.trim_start_matches("http://")).await.unwrap()
}

/// Send raw bytes (e.g. only the headers of a request) and read the answer
/// until the server closes the connection (or [`PATIENCE`] passes).
pub(crate) async fn raw_request(url: &str, request: &str) -> String {
    let mut s = raw_connect(url).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Read from `s` until the server closes it; what it sent meanwhile. Panics
/// if the connection is still open after `patience`.
pub(crate) async fn read_until_closed(s: &mut TcpStream, patience: Duration) -> String {
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = patience.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server kept the connection open for {patience:?}; it sent: {}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Send `request` on a new connection and read one answer: its headers and
/// the body they announce (the connection may stay open).
pub(crate) async fn raw_answer(url: &str, request: &[u8]) -> String {
    let mut s = raw_connect(url).await;
    s.write_all(request).await.unwrap();
    read_answer(&mut s).await
}

/// Read one HTTP answer from `s` (headers and `Content-Length` body).
pub(crate) async fn read_answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("no answer within {PATIENCE:?}; got: {}", String::from_utf8_lossy(&buf)));
    String::from_utf8_lossy(&buf).into_owned()
}
