//! Cluster mode against a Redis that demands what production Redis demands:
//! TLS (`rediss://`, the CA given with `redis_ca_cert`) and an ACL user with a
//! password (`redis://user:password@…`). Two nodes relay across it; a node with
//! the wrong credentials or without the CA stays not ready and says why.

mod common;

use std::time::{Duration, Instant};

use common::redis::{free_port, Redis, LONG};
use common::{builder, start, Ws};
use serde_json::json;
use switchboard::ServerHandle;

async fn node(url: &str, ca: Option<&std::path::Path>) -> ServerHandle {
    let mut b = builder()
        .redis_url(url)
        .cluster_heartbeat(Duration::from_millis(200))
        .cluster_node_ttl(Duration::from_millis(1500));
    if let Some(ca) = ca {
        b = b.redis_ca_cert(ca);
    }
    start(b).await
}

async fn until_up(server: &ServerHandle) {
    let cluster = server.cluster().expect("cluster mode");
    let deadline = Instant::now() + LONG;
    while !cluster.is_up() {
        assert!(
            Instant::now() < deadline,
            "not up: {:?}",
            cluster.down_reason()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Still down after a while, for a reason that names the cause.
async fn stays_down(server: &ServerHandle, cause: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cluster = server.cluster().expect("cluster mode");
    assert!(!cluster.is_up());
    let why = cluster.down_reason().unwrap_or_default().to_lowercase();
    assert!(why.contains(cause), "down because: {why}");
}

/// Alice on one node, Bob on the other: an offer crosses Redis.
async fn relay_across(a: &ServerHandle, b: &ServerHandle) {
    let mut alice = Ws::joined(a.url(), "secure", "alice").await;
    let mut bob = Ws::joined(b.url(), "secure", "bob").await;
    alice.recv_type("user-joined").await;
    alice
        .send(json!({"type":"offer","to":"bob","sdp":{"sdp":"v=0"}}))
        .await;
    let offer = bob.recv_type("offer").await;
    assert_eq!(offer["from"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_relay_over_rediss_with_the_ca_and_refuse_without_it() {
    let tls_port = free_port();
    let dir = common::redis::temp_dir("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("redis.pem"), dir.join("redis.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let tls_port_arg = tls_port.to_string();
    let _redis = Redis::start_with(&[
        "--tls-port",
        &tls_port_arg,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        cert.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let a = node(&url, Some(&cert)).await;
    let b = node(&url, Some(&cert)).await;
    until_up(&a).await;
    until_up(&b).await;
    relay_across(&a, &b).await;
    // The system's roots do not know this CA: the node never comes up.
    let stranger = node(&url, None).await;
    stays_down(&stranger, "certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_as_an_acl_user() {
    // No default user: only `switchboard` with its password gets in.
    let redis = Redis::start_with(&[
        "--user",
        "default",
        "off",
        "--user",
        "switchboard",
        "on",
        ">node-secret",
        "~*",
        "&*",
        "+@all",
    ]);
    let url = format!("redis://switchboard:node-secret@127.0.0.1:{}", redis.port);
    let a = node(&url, None).await;
    let b = node(&url, None).await;
    until_up(&a).await;
    until_up(&b).await;
    relay_across(&a, &b).await;
    let wrong = format!("redis://switchboard:guess@127.0.0.1:{}", redis.port);
    let intruder = node(&wrong, None).await;
    stays_down(&intruder, "authentication").await;
}

#[test]
fn a_ca_file_without_rediss_is_a_config_error() {
    let err = builder()
        .redis_url("redis://127.0.0.1:1")
        .redis_ca_cert("/nonexistent.pem")
        .build()
        .and_then(|s| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(s.start()).map(|_| ())
        })
        .expect_err("refused");
    assert!(err.to_string().contains("rediss://"), "{err}");
}
