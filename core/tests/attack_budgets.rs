//! Per-IP budgets before admission, tried as an attacker would against the real
//! binary: sockets that never send a request head, connection storms, and one
//! IPv6 /64 posing as many clients. Attackers and bystanders connect from
//! different loopback addresses (127.0.0.N), so each assertion shows who pays.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::binary::Binary;
use common::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection from the loopback address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// A WebSocket upgrade from `from` with extra header lines; returns the status
/// and the stream (held open: a 101 is a live connection).
async fn upgrade_from(from: &str, to: SocketAddr, extra: &str) -> (u16, String, TcpStream) {
    let mut s = tcp_from(from, to).await;
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (status, head) = read_status(&mut s).await;
    (status, head, s)
}

/// Reads an HTTP answer's head: (status, the head's text).
async fn read_status(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed without an answer after {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    (head[9..12].parse().unwrap(), head.to_ascii_lowercase())
}

#[tokio::test]
async fn silent_sockets_count_against_their_ip_from_accept() {
    let server = Binary::start(&[
        "--max-pending-per-ip",
        "4",
        "--handshake-timeout-ms",
        "30000",
    ]);
    let to: SocketAddr = server.addr.parse().unwrap();
    // Four sockets that never send a byte: the attacker's whole budget.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tcp_from("127.0.0.2", to).await);
    }
    // The fifth is answered at once, before it sends anything.
    let mut fifth = tcp_from("127.0.0.2", to).await;
    let (status, head) = read_status(&mut fifth).await;
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    // A bystander on another address is not affected.
    let (status, _, _bystander) = upgrade_from("127.0.0.3", to, "").await;
    assert_eq!(status, 101);
    let refused = "switchboard_handshakes_refused_total{reason=\"pending_per_ip\"}";
    assert_eq!(server.metric(refused).await, 1.0);
    // 4 silent sockets (the /metrics request itself is the 5th pending one).
    assert!(server.metric("switchboard_pending_connections").await >= 4.0);
    // Closing one gives its place back: the attacker's address may upgrade again.
    drop(silent.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, _s) = upgrade_from("127.0.0.2", to, "").await;
        if status == 101 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_storm_is_refused_for_its_ip_only_and_refills() {
    let server = Binary::start(&["--conn-rate-per-ip", "2", "--conn-burst-per-ip", "3"]);
    let to: SocketAddr = server.addr.parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (status, _, s) = upgrade_from("127.0.0.4", to, "").await;
        assert_eq!(status, 101);
        held.push(s);
    }
    let (status, head, _) = upgrade_from("127.0.0.4", to, "").await;
    assert_eq!(status, 429, "the burst is spent: {head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    let (status, _, _other) = upgrade_from("127.0.0.5", to, "").await;
    assert_eq!(status, 101, "another address has its own budget");
    // 2 per second: after 600 ms one more token is there.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _, _again) = upgrade_from("127.0.0.4", to, "").await;
    assert_eq!(status, 101, "the budget refills");
    let refused = "switchboard_handshakes_refused_total{reason=\"conn_rate\"}";
    assert!(server.metric(refused).await >= 1.0);
}

#[tokio::test]
async fn one_ipv6_prefix_behind_a_trusted_proxy_is_one_client() {
    let server = Binary::start(&[
        "--trusted-proxies",
        "127.0.0.0/8",
        "--max-conns-per-ip",
        "1",
    ]);
    let to: SocketAddr = server.addr.parse().unwrap();
    let via = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let (status, _, _first) = upgrade_from("127.0.0.6", to, &via("2001:db8:0:7::1")).await;
    assert_eq!(status, 101);
    // Same /64, another address: the same client, over its one connection.
    let (status, _, _) = upgrade_from("127.0.0.6", to, &via("2001:db8:0:7:ffff::2")).await;
    assert_eq!(status, 429);
    // The neighbouring /64 is another client.
    let (status, _, _second) = upgrade_from("127.0.0.6", to, &via("2001:db8:0:8::1")).await;
    assert_eq!(status, 101);
}

#[tokio::test]
async fn with_a_v6_prefix_of_128_every_address_counts_alone() {
    let server = Binary::start(&[
        "--trusted-proxies",
        "127.0.0.0/8",
        "--max-conns-per-ip",
        "1",
        "--ipv6-prefix",
        "128",
    ]);
    let to: SocketAddr = server.addr.parse().unwrap();
    let via = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let (status, _, _first) = upgrade_from("127.0.0.7", to, &via("2001:db8:0:7::1")).await;
    assert_eq!(status, 101);
    let (status, _, _second) = upgrade_from("127.0.0.7", to, &via("2001:db8:0:7::2")).await;
    assert_eq!(status, 101);
}
