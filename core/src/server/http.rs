//! The HTTP/1.1 front of the server: reads a request head, answers the plain
//! endpoints (`/health`, `/ready`, `/metrics`, 404) and decides on upgrades.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

/// Largest accepted request head; browsers send well under 2 KiB.
const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// The parts of a request the server looks at.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// The query string (after `?`), if any: it may carry `token=`.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Bytes read past the head (a client may pipeline its first frame).
    pub rest: Vec<u8>,
}

impl Request {
    /// First value of a header (names compared case-insensitively).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub(crate) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The peer went away or timed out: answer nothing.
    Gone,
    /// Answer with this status.
    Bad(u16),
}

/// Parses a complete request head; `None` while more bytes are needed. Kept
/// synchronous so the 1.5 KiB header array lives on the stack, not inside the
/// connection task's future for the connection's whole life.
fn parse_head(buf: &[u8]) -> Option<Result<Request, HeadError>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (target.to_owned(), None),
            };
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Some(Ok(Request {
                method: req.method.unwrap_or("").to_owned(),
                path,
                query,
                headers,
                rest: buf[len..].to_vec(),
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Some(Err(HeadError::Bad(431)))
        }
        Err(_) => Some(Err(HeadError::Bad(400))),
    }
}

/// Reads and parses one request head.
pub(crate) async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Request, HeadError> {
    let read = async {
        // Read straight into the Vec's spare room: an array here would live on
        // in every connection task's future for the connection's whole life.
        let mut buf = Vec::with_capacity(1024);
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(1024);
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|_| HeadError::Gone)?;
            if n == 0 {
                return Err(HeadError::Gone);
            }
            if let Some(parsed) = parse_head(&buf) {
                return parsed;
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(HeadError::Gone))
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a complete response and closes the write side.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(body);
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A stream whose writes fail with `TimedOut` once one stalls (the peer takes
/// no byte) for longer than the limit: the HTTP write timeout of the request
/// phase, so a client that never reads can not hold a task and a descriptor.
/// The upgrade unwraps it: WebSocket writes are paced by the kit's outbox.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Passes a ready result on (progress: the clock restarts); while pending,
    /// fails once the stall outlasts the limit.
    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bound(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bound(cx, polled)
    }
}

/// Writes the `101 Switching Protocols` answer to a WebSocket upgrade.
pub(crate) async fn switch_protocols<S: AsyncWrite + Unpin>(
    stream: &mut S,
    accept_key: &str,
    subprotocol: Option<&str>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept_key}\r\n"
    );
    if let Some(p) = subprotocol {
        head.push_str("sec-websocket-protocol: ");
        head.push_str(p);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_head_query_and_leftover() {
        let raw = b"GET /ws?token=abc HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00";
        let mut r = &raw[..];
        let req = read_request(&mut r, Duration::from_secs(1)).await.unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query.as_deref(), Some("token=abc"));
        assert!(req.header_has_token("connection", "upgrade"));
        assert_eq!(req.header("HOST"), Some("x"));
        assert_eq!(req.rest, b"\x81\x00");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_read_is_cut_after_the_write_timeout() {
        // 64 bytes of buffer, nobody reading: the answer can not be written.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(ours, Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let body = "x".repeat(4096);
        let wrote = stream.write_all(body.as_bytes()).await;
        assert_eq!(wrote.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        // A reader that keeps taking bytes is never cut, however long it takes.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(ours, Duration::from_secs(1));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 32];
            while let Ok(n @ 1..) = theirs.read(&mut chunk).await {
                got.extend_from_slice(&chunk[..n]);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            got.len()
        });
        stream.write_all(body.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), 4096);
    }

    #[tokio::test]
    async fn oversized_or_garbage_heads_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        let mut r = big.as_bytes();
        assert!(matches!(
            read_request(&mut r, Duration::from_secs(1)).await,
            Err(HeadError::Bad(431))
        ));
        let mut r = &b"\x16\x03\x01 not http\r\n\r\n"[..];
        assert!(matches!(
            read_request(&mut r, Duration::from_secs(1)).await,
            Err(HeadError::Bad(400))
        ));
        let mut r = &b"GET / HT"[..];
        assert!(matches!(
            read_request(&mut r, Duration::from_secs(1)).await,
            Err(HeadError::Gone)
        ));
    }
}
