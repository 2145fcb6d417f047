//! Over real sockets: TURN credentials in `room-info`, trusted-proxy headers,
//! TLS (`wss://`) with a certificate made at test time, and the cap on member
//! metadata.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;

#[tokio::test]
async fn room_info_carries_turn_rest_credentials() {
    let secret = "coturn-shared-secret";
    let server = start(builder().turn(
        secret,
        [
            "stun:stun.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349",
        ],
        Duration::from_secs(600),
    ))
    .await;
    let mut a = Ws::connect(server.url()).await;
    a.send(json!({"type":"join","roomId":"r","userId":"alice"}))
        .await;
    let info = a.recv_type("room-info").await;
    let servers = info["iceServers"].as_array().expect("iceServers").clone();
    assert_eq!(servers.len(), 2, "{info}");
    assert_eq!(servers[0], json!({"urls":["stun:stun.example.org:3478"]}));
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!([
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349"
        ])
    );
    // username = expiry:userId, expiry = now + ttl (Unix seconds).
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 601).contains(&expiry),
        "{expiry} vs {now}"
    );
    // credential = base64(HMAC-SHA1(secret, username)), what coturn checks.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], want.as_str());

    // Without TURN configured there is no iceServers field.
    let plain = start(builder()).await;
    let mut b = Ws::connect(plain.url()).await;
    b.send(json!({"type":"join","roomId":"r","userId":"bob"}))
        .await;
    assert!(b.recv_type("room-info").await.get("iceServers").is_none());
}

/// tests/deploy/turnserver.conf, the coturn settings docs/DEPLOYMENT.md shows:
/// with its placeholder filled in with the server's `--turn-secret`, coturn's
/// REST-credential rule (`use-auth-secret`: the password must be
/// base64(HMAC-SHA1(static-auth-secret, username)) and the username's
/// timestamp in the future) accepts what `room-info` hands out.
#[tokio::test]
async fn documented_coturn_settings_accept_room_info_credentials() {
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/deploy/turnserver.conf"
    ))
    .unwrap();
    let settings: Vec<(&str, Option<&str>)> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (l, None),
        })
        .collect();
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    assert_eq!(get("use-auth-secret"), Some(None), "REST credentials on");
    assert_eq!(get("realm"), Some(Some("turn.example.com")));
    let placeholder = get("static-auth-secret")
        .flatten()
        .expect("a shared secret");
    assert_eq!(placeholder, "<the same secret>");

    let secret = "the-same-secret-as-coturn";
    let static_auth_secret = placeholder.replace("<the same secret>", secret);
    let server = start(builder().turn(
        secret,
        ["turn:turn.example.com:3478?transport=udp"],
        Duration::from_secs(3600),
    ))
    .await;
    let mut a = Ws::connect(server.url()).await;
    a.send(json!({"type":"join","roomId":"r","userId":"alice"}))
        .await;
    let info = a.recv_type("room-info").await;
    let turn = &info["iceServers"][0];
    let username = turn["username"].as_str().unwrap();
    let (expiry, _) = username.split_once(':').unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expiry.parse::<u64>().unwrap() > now, "not yet expired");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(static_auth_secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], password.as_str());
}

/// The client IP the server settled on for the next connection (its `connected`
/// event), after connecting with these headers.
async fn seen_ip(
    server: &switchboard::ServerHandle,
    headers: &[(&str, &str)],
) -> Result<(String, Ws), Refused> {
    let mut events = server.events();
    let ws = Ws::connect_with(server.url(), headers).await?;
    let e = next_event(&mut events, "connected").await;
    Ok((e.fields().unwrap()["ip"].as_str().unwrap().to_owned(), ws))
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // The test client (127.0.0.1) is not a trusted proxy here.
    let server = start(
        builder()
            .trusted_proxies(["10.0.0.0/8"])
            .max_conns_per_ip(1),
    )
    .await;
    let (ip, _a) = seen_ip(
        &server,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.8"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ip, "127.0.0.1", "spoofed headers are not believed");
    // Nor can they dodge the per-IP limit.
    let second = Ws::connect_with(server.url(), &[("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!(second.err(), Some(Refused::Status(429)));
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_give_the_client_ip() {
    let server = start(
        builder()
            .trusted_proxies(["127.0.0.1/32"])
            .max_conns_per_ip(1),
    )
    .await;
    let (ip, _a) = seen_ip(&server, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .unwrap();
    assert_eq!(ip, "203.0.113.7");
    // The client forged the left entry; the proxy appended what it saw.
    let (ip, _b) = seen_ip(
        &server,
        &[("x-forwarded-for", "198.51.100.99, 203.0.113.9")],
    )
    .await
    .unwrap();
    assert_eq!(ip, "203.0.113.9");
    let (ip, _c) = seen_ip(&server, &[("x-real-ip", "203.0.113.10")])
        .await
        .unwrap();
    assert_eq!(ip, "203.0.113.10");
    // The per-IP limit applies to the client behind the proxy, not the proxy.
    let again = Ws::connect_with(server.url(), &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(again.err(), Some(Refused::Status(429)));
}

#[tokio::test]
async fn bad_proxy_lists_fail_at_build() {
    assert!(builder().trusted_proxies(["10.0.0.0/33"]).build().is_err());
    assert!(builder().trusted_proxies(["proxy.local"]).build().is_err());
}

// ---- TLS ----

/// A self-signed certificate for localhost / 127.0.0.1, written to a fresh
/// directory: (cert PEM, cert path, key path).
struct TestCert {
    pem: String,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-tls-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a new certificate (new key) and writes it over `dir/cert.pem`, `dir/key.pem`.
fn write_cert(dir: &std::path::Path) -> TestCert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    // Written beside, then renamed: a reload never sees half a file.
    std::fs::write(dir.join("cert.tmp"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.tmp"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("cert.tmp"), &cert_path).unwrap();
    std::fs::rename(dir.join("key.tmp"), &key_path).unwrap();
    TestCert {
        pem: ck.cert.pem(),
        cert_path,
        key_path,
    }
}

async fn tls_client(url: &str, root_pem: &str, user: &str) -> switchboard::Result<Client> {
    Client::builder(url)
        .tls_root_certificate_pem(root_pem)
        .user_id(user)
        .max_reconnect_attempts(Some(0))
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
}

use switchboard::Client;

#[tokio::test]
async fn a_drain_that_times_out_cuts_a_tls_handshake_in_progress() {
    let dir = test_dir("cut-handshake");
    let cert = write_cert(&dir);
    let server = start(
        builder()
            .tls(&cert.cert_path, &cert.key_path)
            .drain_timeout(Duration::from_millis(300))
            .handshake_timeout(Duration::from_secs(30)),
    )
    .await;
    // Connected, but never starts its TLS handshake.
    shutdown_cuts_a_silent_socket(server).await;
}

#[tokio::test]
async fn tls_handshake_and_message_exchange() {
    let dir = test_dir("exchange");
    let cert = write_cert(&dir);
    let server = start(builder().tls(&cert.cert_path, &cert.key_path)).await;
    let url = server.url().to_owned();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");

    let alice = tls_client(&url, &cert.pem, "alice").await.unwrap();
    let mut alice_events = alice.events();
    alice.join("r").await.unwrap();
    let bob = tls_client(&url, &cert.pem, "bob").await.unwrap();
    let info = bob.join("r").await.unwrap();
    assert_eq!(info["users"], json!(["alice"]));
    bob.send_offer("alice", json!({"type":"offer","sdp":"v=0\r\n"}))
        .await
        .unwrap();
    let offer = next_event(&mut alice_events, "offer").await;
    let f = offer.fields().unwrap();
    assert_eq!(f["from"], "bob");
    assert_eq!(f["sdp"]["sdp"], "v=0\r\n");

    // Without the root the certificate is refused; plain ws:// gets no WebSocket.
    let untrusted = Client::builder(&url)
        .max_reconnect_attempts(Some(0))
        .connect()
        .await;
    assert!(untrusted.is_err(), "an unknown certificate must be refused");
    let plain = url.replacen("wss://", "ws://", 1);
    assert!(Ws::connect_with(&plain, &[]).await.is_err());
    alice.close().await;
    bob.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tls_certificate_reload_keeps_connections() {
    let dir = test_dir("reload");
    let first = write_cert(&dir);
    let server = start(builder().tls(&first.cert_path, &first.key_path)).await;
    let url = server.url().to_owned();
    let alice = tls_client(&url, &first.pem, "alice").await.unwrap();
    alice.join("r").await.unwrap();

    let second = write_cert(&dir);
    server.reload_tls().unwrap();
    // New handshakes present the new certificate.
    let bob = tls_client(&url, &second.pem, "bob").await.unwrap();
    bob.join("r").await.unwrap();
    assert!(
        tls_client(&url, &first.pem, "carol").await.is_err(),
        "the old certificate is no longer presented"
    );
    // The connection made before the reload still relays.
    let mut bob_events = bob.events();
    alice
        .send(Some("bob"), json!({"hello":"after reload"}))
        .await
        .unwrap();
    let m = next_event(&mut bob_events, "message").await;
    assert_eq!(m.fields().unwrap()["data"], json!({"hello":"after reload"}));

    // A broken file is refused and the current certificate stays.
    std::fs::write(&second.key_path, "not a key").unwrap();
    assert!(server.reload_tls().is_err());
    assert!(tls_client(&url, &second.pem, "dave").await.is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tls_with_missing_files_fails_at_start() {
    let r = builder()
        .tls("/nonexistent/cert.pem", "/nonexistent/key.pem")
        .build()
        .unwrap()
        .start()
        .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn binary_reloads_the_certificate_on_sighup() {
    use std::process::Command;
    let dir = test_dir("sighup");
    let first = write_cert(&dir);
    let (mut child, url) = spawn_binary(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            first.cert_path.to_str().unwrap(),
            "--tls-key",
            first.key_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(url.starts_with("wss://"), "{url}");
    let alice = tls_client(&url, &first.pem, "alice").await.unwrap();
    alice.join("r").await.unwrap();

    let second = write_cert(&dir);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The reload happens on the server's own time: poll for the new certificate.
    let deadline = tokio::time::Instant::now() + WAIT;
    let bob = loop {
        match tls_client(&url, &second.pem, "bob").await {
            Ok(c) => break c,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "no reload: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let info = bob.join("r").await.unwrap();
    assert_eq!(
        info["users"],
        json!(["alice"]),
        "the old connection lives on"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop it"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// Member metadata is capped: a client can not make every newcomer's
/// `room-info` carry an unbounded blob of its own.
#[tokio::test]
async fn oversized_member_metadata_is_refused_and_the_room_stays_joinable() {
    let server = start(builder().max_metadata_bytes(1024)).await;
    let url = server.url().to_owned();
    let mut big = Ws::connect(&url).await;
    let blob = "x".repeat(1100);
    let code = big
        .error_code(json!({"type":"join","roomId":"r","userId":"big","metadata":{"blob":blob}}))
        .await;
    assert_eq!(code, "invalid-message");
    let mut small = Ws::connect(&url).await;
    small
        .send(json!({"type":"join","roomId":"r","userId":"small","metadata":{"role":"host"}}))
        .await;
    small.recv_type("room-info").await;
    let mut next = Ws::connect(&url).await;
    next.send(json!({"type":"join","roomId":"r","userId":"next"}))
        .await;
    let info = next.recv_type("room-info").await;
    let peers = info["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "only the member within the cap: {info}");
    assert_eq!(peers[0]["metadata"]["role"], "host");
}

/// With auth on, TURN credentials go to authenticated users only: an
/// anonymous connection can not join (so gets no `room-info`), and the token's
/// user is the one the credentials name.
#[tokio::test]
async fn with_auth_on_only_authenticated_users_get_turn_credentials() {
    let server = start(builder().auth_tokens([("tok-alice", "alice")]).turn(
        "s3cret",
        ["turn:turn.example.org:3478"],
        Duration::from_secs(60),
    ))
    .await;
    let mut anon = Ws::connect(server.url()).await;
    let code = anon
        .error_code(json!({"type":"join","roomId":"r","userId":"mallory"}))
        .await;
    assert_eq!(code, "unauthorized");
    let mut alice = Ws::connect_with(server.url(), &[("authorization", "Bearer tok-alice")])
        .await
        .expect("admitted");
    alice.send(json!({"type":"join","roomId":"r"})).await;
    let info = alice.recv_type("room-info").await;
    let username = info["iceServers"][0]["username"]
        .as_str()
        .expect("credentials");
    assert!(username.ends_with(":alice"), "{username}");
}
