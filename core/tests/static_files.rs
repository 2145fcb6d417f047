//! The browser client and demo page over real HTTP: served only when configured,
//! with the right content types and revalidation headers, byte-for-byte the
//! committed `browser/dist` build, next to a working WebSocket path.

mod common;

use std::collections::HashMap;

use common::{builder, start, Ws, WAIT};
use switchboard::ServerHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_JS: &str = include_str!("../../browser/dist/switchboard.js");

struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

async fn request(
    server: &ServerHandle,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Response {
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(server: &ServerHandle, path: &str) -> Response {
    request(server, "GET", path, &[]).await
}

#[tokio::test]
async fn demo_serves_the_page_its_files_and_the_client() {
    let server = start(builder().demo(true).path("/signal")).await;

    let page = get(&server, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(page.body.contains("<title>Switchboard demo call</title>"));
    assert!(
        page.body
            .contains(r#"<meta name="switchboard-path" content="/signal">"#),
        "the page is told the configured WebSocket path"
    );
    assert!(page
        .header("content-security-policy")
        .contains("default-src 'self'"));
    assert_eq!(page.header("cache-control"), "no-cache");
    assert_eq!(page.header("x-content-type-options"), "nosniff");

    let js = get(&server, "/switchboard.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(js.body, CLIENT_JS, "the committed build, byte for byte");
    // One bundled ES module exporting the client.
    assert!(js.body.contains("var SignalingClient = class"));
    assert!(js.body.contains("export {") && js.body.contains("  SignalingClient,\n"));
    assert_eq!(js.header("content-length"), CLIENT_JS.len().to_string());

    let script = get(&server, "/demo.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert!(script.body.contains("from '/switchboard.js'"));
    let style = get(&server, "/demo.css").await;
    assert_eq!(style.status, 200);
    assert_eq!(style.header("content-type"), "text/css; charset=utf-8");

    for missing in [
        "/switchboard.d.ts",
        "/demo",
        "/../Cargo.toml",
        "/favicon.ico",
    ] {
        assert_eq!(get(&server, missing).await.status, 404, "{missing}");
    }
    assert_eq!(
        request(&server, "POST", "/switchboard.js", &[])
            .await
            .status,
        404
    );
    // The WebSocket path and the plain endpoints still work beside them.
    assert_eq!(get(&server, "/health").await.status, 200);
    let ws = Ws::connect(server.url()).await;
    assert_eq!(ws.connected["type"], "connected");
}

#[tokio::test]
async fn etag_revalidation_and_head() {
    let server = start(builder().serve_client(true)).await;
    let first = get(&server, "/switchboard.js").await;
    let etag = first.header("etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.len() > 2,
        "a strong ETag: {etag}"
    );

    let again = request(
        &server,
        "GET",
        "/switchboard.js",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), etag);

    let listed = format!("\"other\", {etag}");
    let in_list = request(
        &server,
        "GET",
        "/switchboard.js",
        &[("If-None-Match", &listed)],
    )
    .await;
    assert_eq!(in_list.status, 304);

    let stale = request(
        &server,
        "GET",
        "/switchboard.js",
        &[("If-None-Match", "\"stale\"")],
    )
    .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, CLIENT_JS);

    let head = request(&server, "HEAD", "/switchboard.js", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert_eq!(head.header("content-length"), CLIENT_JS.len().to_string());
    assert_eq!(head.header("etag"), etag);
}

#[tokio::test]
async fn the_client_alone_or_nothing_unless_configured() {
    let client_only = start(builder().serve_client(true)).await;
    assert_eq!(get(&client_only, "/switchboard.js").await.status, 200);
    for path in ["/", "/index.html", "/demo.js", "/demo.css"] {
        assert_eq!(get(&client_only, path).await.status, 404, "{path}");
    }

    let plain = start(builder()).await;
    for path in ["/", "/switchboard.js", "/demo.js", "/demo.css"] {
        assert_eq!(get(&plain, path).await.status, 404, "{path}");
    }
}
