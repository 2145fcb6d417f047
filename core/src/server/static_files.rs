//! The browser client (`/switchboard.js`) and the demo call page (`/`, `/demo.js`,
//! `/demo.css`), compiled into the binary and served on the signaling port when
//! the configuration asks for them.
//!
//! The URLs carry no version, so responses are `cache-control: no-cache` with a
//! strong `ETag`: a browser keeps its copy and revalidates it with one small
//! request (`304 Not Modified`), and never runs a stale client after an upgrade.

use std::borrow::Cow;
use std::sync::LazyLock;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::http::Request;
use crate::config::ServerConfig;

/// The compiled browser client, exactly as committed in `browser/dist`.
const CLIENT_JS: &str = include_str!("../../assets/switchboard.js");
const DEMO_HTML: &str = include_str!("../../assets/demo/index.html");
const DEMO_JS: &str = include_str!("../../assets/demo/demo.js");
const DEMO_CSS: &str = include_str!("../../assets/demo/demo.css");

/// Replaced in the demo page by the configured WebSocket path.
const PATH_PLACEHOLDER: &str = "__SWITCHBOARD_WS_PATH__";

/// One file that can be served.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    content_type: &'static str,
    body: String,
    etag: String,
    /// Extra headers (the demo page's content security policy).
    headers: &'static [(&'static str, &'static str)],
}

impl Asset {
    fn new(
        content_type: &'static str,
        body: String,
        headers: &'static [(&'static str, &'static str)],
    ) -> Self {
        let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
        Asset {
            content_type,
            body,
            etag,
            headers,
        }
    }
}

/// The page talks only to its own origin (scripts, styles, the WebSocket).
const DEMO_PAGE_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
];

static CLIENT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/javascript; charset=utf-8", CLIENT_JS.to_owned(), &[]));
static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/javascript; charset=utf-8", DEMO_JS.to_owned(), &[]));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/css; charset=utf-8", DEMO_CSS.to_owned(), &[]));

/// The asset at `path` under `config`, if any: `/switchboard.js` with
/// `serve_client` or `demo`; the page and its files with `demo`. The page is
/// built per request (it carries the configured WebSocket path; a demo needs no
/// cache), the rest are built once.
pub(crate) fn find(config: &ServerConfig, path: &str) -> Option<Cow<'static, Asset>> {
    match path {
        "/switchboard.js" if config.serve_client || config.demo => Some(Cow::Borrowed(&*CLIENT)),
        "/" | "/index.html" if config.demo => {
            let body = DEMO_HTML.replace(PATH_PLACEHOLDER, &html_attribute(&config.url_path()));
            Some(Cow::Owned(Asset::new(
                "text/html; charset=utf-8",
                body,
                DEMO_PAGE_HEADERS,
            )))
        }
        "/demo.js" if config.demo => Some(Cow::Borrowed(&*SCRIPT)),
        "/demo.css" if config.demo => Some(Cow::Borrowed(&*STYLE)),
        _ => None,
    }
}

/// Whether `path` is one of the files served under `config`.
pub(crate) fn serves(config: &ServerConfig, path: &str) -> bool {
    match path {
        "/switchboard.js" => config.serve_client || config.demo,
        "/" | "/index.html" | "/demo.js" | "/demo.css" => config.demo,
        _ => false,
    }
}

/// Answers a `GET`/`HEAD` of a file [`serves`] names (`404` otherwise): `304`
/// when `If-None-Match` names its ETag.
pub(crate) async fn serve<S: AsyncWrite + Unpin>(
    stream: &mut S,
    config: &ServerConfig,
    req: &Request,
) {
    let Some(asset) = find(config, &req.path) else {
        let body = "not found\n";
        let head = format!("HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    };
    let not_modified = req.header("if-none-match").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == asset.etag || t.trim() == "*")
    });
    let body = if not_modified {
        ""
    } else {
        asset.body.as_str()
    };
    let mut head = format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\netag: {}\r\ncache-control: no-cache\r\nx-content-type-options: nosniff\r\nconnection: close\r\n",
        if not_modified { "304 Not Modified" } else { "200 OK" },
        asset.content_type,
        body.len(),
        asset.etag
    );
    for (k, v) in asset.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Escapes a value for a double-quoted HTML attribute.
fn html_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// 64-bit FNV-1a: enough to tell versions of a file apart in an ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_page_gets_the_configured_path_escaped() {
        let config = ServerConfig {
            demo: true,
            path: "/sig\"<x>".to_owned(),
            ..ServerConfig::default()
        };
        let page = find(&config, "/").expect("demo page");
        assert!(!page.body.contains(PATH_PLACEHOLDER));
        assert!(page.body.contains("/sig&quot;&lt;x&gt;"));
        assert!(
            find(&config, "/switchboard.js").is_some(),
            "demo implies the client"
        );
    }

    #[test]
    fn nothing_is_served_unless_configured() {
        let off = ServerConfig::default();
        for p in [
            "/",
            "/switchboard.js",
            "/demo.js",
            "/demo.css",
            "/index.html",
        ] {
            assert!(find(&off, p).is_none(), "{p}");
        }
        let client_only = ServerConfig {
            serve_client: true,
            ..ServerConfig::default()
        };
        assert!(find(&client_only, "/switchboard.js").is_some());
        assert!(find(&client_only, "/").is_none());
        assert!(find(&client_only, "/demo.js").is_none());
    }

    #[test]
    fn etags_differ_with_content() {
        let a = Asset::new("text/plain", "a".to_owned(), &[]);
        let b = Asset::new("text/plain", "b".to_owned(), &[]);
        assert_ne!(a.etag, b.etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
    }
}
