//! The nginx configuration of docs/DEPLOYMENT.md (tests/deploy/nginx.conf), run
//! for real: nginx terminates TLS and proxies WebSocket upgrades to an
//! in-process server that trusts it.
//! Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3), so the
//! address nginx forwards differs from nginx's own.
//!
//! Needs the `nginx` binary (Debian package `nginx-light`); `scripts/test-security.sh`
//! installs it and sets `SWITCHBOARD_REQUIRE_NGINX=1`, so there a missing nginx
//! fails instead of returning early.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::Client;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// tests/deploy/nginx.conf: the block docs/DEPLOYMENT.md shows (the page's copy
/// is checked against this file by scripts/check-doc-snippets.py).
fn documented_config() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/deploy/nginx.conf"),
    )
    .unwrap()
}

/// What makes the block work as a WebSocket proxy, checked without nginx too:
/// the upgrade headers (nginx drops hop-by-hop headers unless told), HTTP/1.1
/// upstream, the client address forwarded, and a read timeout above the
/// server's heartbeat (30 s ping + 10 s grace).
#[test]
fn documented_config_forwards_upgrades_and_client_addresses() {
    let conf = documented_config();
    let lines: Vec<&str> = conf.lines().map(str::trim).collect();
    for needed in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_pass http://switchboard;",
        "location /ws {",
    ] {
        assert!(lines.contains(&needed), "nginx.conf lacks `{needed}`");
    }
    assert!(conf.contains("map $http_upgrade $connection_upgrade {"));
    let timeout = lines
        .iter()
        .find_map(|l| l.strip_prefix("proxy_read_timeout "))
        .and_then(|v| v.strip_suffix("s;"))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("proxy_read_timeout in seconds");
    assert!(timeout > 40, "{timeout} s would cut quiet connections");
}

/// Stops nginx (gracefully, so its workers go too) when the test ends.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts nginx with the documented block, adapted only where a test must:
/// addresses, port and certificate paths.
async fn start_nginx(dir: &Path, upstream: SocketAddr, cert: &Path, key: &Path) -> (Nginx, u16) {
    let port = free_port();
    let block = documented_config();
    let adapted = block
        .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "/etc/ssl/signal.example.com/fullchain.pem",
            cert.to_str().unwrap(),
        )
        .replace(
            "/etc/ssl/signal.example.com/privkey.pem",
            key.to_str().unwrap(),
        );
    assert_ne!(adapted, block, "the placeholders are still in the doc");
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         {adapted}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx_binary().unwrap())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut nginx = Nginx(child);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = nginx.0.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {log}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (nginx, port)
}

fn tls_config(root_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type TlsWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket through nginx from source address `from`, with extra headers;
/// `Err(status)` when the upgrade is refused.
async fn connect_from(
    from: &str,
    port: u16,
    root_pem: &str,
    headers: &[(&str, &str)],
) -> Result<TlsWs, u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let mut req = format!("wss://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes());
        req.headers_mut().insert(name.unwrap(), v.parse().unwrap());
    }
    let connector = tokio_tungstenite::Connector::Rustls(tls_config(root_pem));
    let handshake =
        tokio_tungstenite::client_async_tls_with_config(req, stream, None, Some(connector));
    match tokio::time::timeout(WAIT, handshake)
        .await
        .expect("handshake in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn documented_nginx_config_proxies_websockets_and_client_addresses() {
    if nginx_binary().is_none() {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_NGINX").is_none(),
            "nginx is required here but not installed"
        );
        eprintln!("nginx not installed: this test runs in scripts/test-security.sh");
        return;
    }
    let dir = std::env::temp_dir().join(format!("switchboard-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let root = ck.cert.pem();

    let server = start(
        builder()
            .trusted_proxies(["127.0.0.1/32"])
            .max_conns_per_ip(1),
    )
    .await;
    let (_nginx, port) = start_nginx(&dir, server.local_addr(), &cert, &key).await;
    let mut events = server.events();

    // The address nginx saw (127.0.0.2) reaches the server; the one the client
    // claims is replaced.
    let mut a = connect_from(
        "127.0.0.2",
        port,
        &root,
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await
    .expect("upgrade through nginx");
    let connected = next_event(&mut events, "connected").await;
    assert_eq!(connected.fields().unwrap()["ip"], "127.0.0.2");
    // The per-IP limit counts the client behind nginx, not nginx.
    assert_eq!(
        connect_from("127.0.0.2", port, &root, &[]).await.err(),
        Some(429)
    );
    let mut b = connect_from("127.0.0.3", port, &root, &[]).await.unwrap();
    assert_eq!(
        next_event(&mut events, "connected").await.fields().unwrap()["ip"],
        "127.0.0.3"
    );

    // Signaling goes through: join, relay.
    let send = |v: serde_json::Value| Message::text(v.to_string());
    a.send(send(json!({"type":"join","roomId":"r","userId":"alice"})))
        .await
        .unwrap();
    b.send(send(json!({"type":"join","roomId":"r","userId":"bob"})))
        .await
        .unwrap();
    next_event(&mut events, "user-joined").await;
    next_event(&mut events, "user-joined").await;
    b.send(send(
        json!({"type":"offer","to":"alice","sdp":{"type":"offer","sdp":"v=0"}}),
    ))
    .await
    .unwrap();
    let offer = loop {
        let m = tokio::time::timeout(WAIT, a.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "offer" {
                break v;
            }
        }
    };
    assert_eq!(offer["from"], "bob");

    // The Rust client works through it too (trusting the proxy's certificate).
    let client = Client::builder(format!("wss://127.0.0.1:{port}/ws"))
        .tls_root_certificate_pem(&root)
        .user_id("carol")
        .connect()
        .await
        .unwrap();
    let info = client.join("r").await.unwrap();
    assert_eq!(info["users"], json!(["alice", "bob"]));
    client.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
