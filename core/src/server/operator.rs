//! The operator routes of the built-in server: the HTTP API (`/api/v1/…`,
//! answered by the kit's [`Edge::api`]) with its request body, and the API's
//! live stream for the admin page (`GET /api/v1/stream`: one snapshot per line,
//! every second, until the client goes or the server drains).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::http::{respond, Request};
use crate::edge::{ApiRequest, Edge};

/// How often the stream writes a snapshot.
const STREAM_EVERY: Duration = Duration::from_secs(1);

/// Answers one API request (the head is read; its body follows).
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    edge: &Edge,
    req: Request,
    read_timeout: Duration,
) {
    // Only a request with the key has its body read: anyone else gets the
    // kit's answer (404 while the API is off, 401) before a byte more is held.
    if !edge.api_authorized(req.header("authorization")) {
        return answer(stream, edge, &req, &[]).await;
    }
    // The key holder's live stream (the API is on: the key matched).
    if req.method == "GET" && req.path == "/api/v1/stream" {
        return serve_stream(stream, edge).await;
    }
    let limit = edge.api_body_limit();
    let length = match req.header("content-length").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            let body = r#"{"error":{"code":"invalid-message","message":"bad Content-Length"}}"#;
            return respond(stream, 400, "application/json", &[], body).await;
        }
    };
    // Over the bound: refused before a byte of it is read.
    if length > limit {
        let body = r#"{"error":{"code":"message-too-big","message":"the body exceeds the message size limit"}}"#;
        return respond(stream, 413, "application/json", &[], body).await;
    }
    let mut body = req.rest.clone();
    body.truncate(length);
    if body.len() < length {
        let mut rest = vec![0; length - body.len()];
        let read = tokio::time::timeout(read_timeout, stream.read_exact(&mut rest)).await;
        if !matches!(read, Ok(Ok(_))) {
            return; // the client went away or stalled: nothing to answer
        }
        body.extend_from_slice(&rest);
    }
    answer(stream, edge, &req, &body).await;
}

/// The kit's answer to `req` with `body`, written out.
async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, edge: &Edge, req: &Request, body: &[u8]) {
    let reply = edge.api(&ApiRequest {
        method: &req.method,
        path: &req.path,
        query: req.query.as_deref(),
        authorization: req.header("authorization"),
        body,
    });
    let extra: &[(&str, &str)] = if reply.status == 401 {
        &[("www-authenticate", "Bearer")]
    } else {
        &[]
    };
    respond(stream, reply.status, reply.content_type, extra, &reply.body).await;
}

/// `GET /api/v1/stream`: newline-delimited JSON snapshots, one a second.
async fn serve_stream<S: AsyncWrite + Unpin>(stream: &mut S, edge: &Edge) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncache-control: no-store\r\nconnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // One line per tick; a client that stops reading stalls the write, which
    // the write timeout ends (the stream holds one snapshot at a time).
    while !edge.hub().is_draining() {
        let mut line = edge.api_snapshot().to_string();
        line.push('\n');
        let wrote = tokio::time::timeout(STREAM_EVERY * 10, async {
            stream.write_all(line.as_bytes()).await?;
            stream.flush().await
        })
        .await;
        if !matches!(wrote, Ok(Ok(()))) {
            return;
        }
        tokio::time::sleep(STREAM_EVERY).await;
    }
    let _ = stream.shutdown().await;
}
