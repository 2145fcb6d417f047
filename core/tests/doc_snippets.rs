//! The Rust snippets of docs/SERVER.md, run as written: the server from Rust
//! (events, send, kick, drain), the Rust client (token provider, offer, the
//! event loop) and authentication (JWT, a host hook, a client token). Each
//! snippet is the part of a test between `// docs/SERVER.md` and the
//! assertions; `scripts/check-doc-snippets.py` checks that the page still
//! shows exactly these lines.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::Value;
use switchboard::{Client, ServerHandle};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(10);

/// Every client event of `client` since connect, up to its `closed`.
async fn events_until_closed(client: &Client) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut events = client.events();
    let mut seen = Vec::new();
    while let Some(e) = tokio::time::timeout(WAIT, events.next()).await.unwrap() {
        let closed = e.kind() == "closed";
        seen.push(e.to_json());
        if closed {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn from_rust() -> TestResult {
    use futures_util::StreamExt;
    use serde_json::json;

    // docs/SERVER.md, "From Rust":
    let server = switchboard::Server::builder()
        .listen("127.0.0.1:0")
        .path("/ws")
        .build()?
        .start()
        .await?;
    println!("{}", server.url()); // ws://127.0.0.1:PORT/ws
    let mut events = server.events(); // Stream of switchboard::Event
    let alice = Client::builder(server.url())
        .user_id("alice")
        .connect()
        .await?;
    alice.join("room-1").await?; // a peer joins (a browser, another process, …)
    while let Some(event) = events.next().await {
        if event.kind() == "user-joined" {
            println!("{:?} joined {:?}", event.user_id(), event.room_id());
            break;
        }
    }
    let hello = json!({"type": "message", "from": "host", "data": "hi"});
    server.send("room-1", "alice", hello).await?;
    server.kick("room-1", "alice").await?; // user-left (kicked), close 4403
    server.shutdown().await; // graceful drain

    // What the snippet did: alice got the message, then the kick's 4403.
    let seen = tokio::time::timeout(WAIT, events_until_closed(&alice)).await?;
    let message = seen
        .iter()
        .find(|e| e["type"] == "message")
        .expect("the host's message");
    assert_eq!(
        (&message["from"], &message["data"]),
        (&json!("host"), &json!("hi"))
    );
    assert_eq!(seen.last().unwrap()["code"], 4403, "{seen:?}");
    // And the server saw her leave because of the kick.
    // (The stream lives as long as the handle: read what it holds, with a bound.)
    let kicked = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if e.kind() == "user-left" {
                return e.str_field("reason") == Some("kicked");
            }
        }
        false
    })
    .await?;
    assert!(kicked, "user-left with reason kicked");
    alice.close().await;
    Ok(())
}

/// The answers the client snippet handled, as (from, sdp).
static ANSWERS: Mutex<Vec<(Value, Value)>> = Mutex::new(Vec::new());

fn handle_answer(from: &Value, sdp: &Value) {
    ANSWERS.lock().unwrap().push((from.clone(), sdp.clone()));
}

fn renegotiate(rooms: &[String]) {
    panic!("no session was lost in this test, yet rejoined {rooms:?}");
}

async fn fetch_fresh_token() -> String {
    "alice-token".to_owned()
}

/// Bob: answers the first offer, then the host removes alice from the room
/// (4403: her client closes for good, which ends the snippet's loop).
async fn answer_then_kick(bob: Client, server: ServerHandle) {
    use futures_util::StreamExt;
    let mut events = bob.events();
    while let Some(e) = tokio::time::timeout(WAIT, events.next()).await.unwrap() {
        if e.kind() == "offer" {
            let from = e.from().unwrap().to_owned();
            let answer = serde_json::json!({"type": "answer", "sdp": "v=0 answer"});
            bob.send_answer(&from, answer).await.unwrap();
            server.kick("room-1", &from).await.unwrap();
            break;
        }
    }
    bob.close().await;
}

#[tokio::test]
async fn rust_client() -> TestResult {
    let server = switchboard::Server::builder()
        .listen("127.0.0.1:0")
        .auth_tokens([("alice-token", "alice"), ("bob-token", "bob")])
        .build()?
        .start()
        .await?;
    let url = server.url().to_owned();
    let bob = Client::builder(&url).token("bob-token").connect().await?;
    bob.join("room-1").await?;
    let bob = tokio::spawn(answer_then_kick(bob, server.clone()));

    // docs/SERVER.md, "Rust client":
    use futures_util::StreamExt;
    use serde_json::json;
    use switchboard::{Client, Event};

    let client = Client::builder(url)
        .user_id("alice")
        .token_provider(|| async { Ok(fetch_fresh_token().await) }) // asked on every (re)connect
        .connect()
        .await?; // resolves after the server's `connected`
    let mut events = client.events(); // first call: every event since connect
    let info = client.join("room-1").await?; // the room-info message
    let offer = json!({"type": "offer", "sdp": "v=0…"});
    client.send_offer("bob", offer).await?; // resolves on the server's ack
    while let Some(event) = events.next().await {
        match event {
            Event::Answer(m) => handle_answer(&m["from"], &m["sdp"]),
            Event::Rejoined { rooms } => renegotiate(&rooms), // session lost: new offers
            Event::Closed { .. } => break,
            _ => {}
        }
    }
    client.close().await;

    assert_eq!(info["users"], json!(["bob"]));
    assert_eq!(
        info["you"]["userId"], "alice",
        "the provider's token names her"
    );
    let answers = ANSWERS.lock().unwrap().clone();
    assert_eq!(
        answers,
        [(json!("bob"), json!({"type": "answer", "sdp": "v=0 answer"}))]
    );
    tokio::time::timeout(WAIT, bob).await??;
    server.shutdown().await;
    Ok(())
}

/// A stand-in for the application's session store.
#[derive(Debug, Clone, Copy)]
struct Sessions;

#[derive(Debug)]
struct User {
    id: String,
    profile: Value,
}

impl Sessions {
    async fn lookup(&self, token: &str) -> Option<User> {
        tokio::time::sleep(Duration::from_millis(1)).await; // a database round trip
        (token == "session-of-carol").then(|| User {
            id: "carol".to_owned(),
            profile: serde_json::json!({"name": "Carol"}),
        })
    }
}

fn mint(secret: &str, sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": sub, "aud": "switchboard", "exp": exp});
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::default(), &claims, &key).unwrap()
}

#[tokio::test]
async fn authentication() -> TestResult {
    let secret = "a-secret-of-at-least-32-random-chars";
    let jwt = mint(secret, "alice");
    let my_sessions = Sessions;

    // docs/SERVER.md, "Authentication":
    use switchboard::{AuthRequest, Identity, JwtConfig, Server};
    // JWT with a required audience and no clock-skew leeway:
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .jwt(
            JwtConfig::hs256(secret)
                .audience("switchboard")
                .leeway(Duration::ZERO),
        )
        .build()?
        .start()
        .await?;
    // Or the host decides (async; awaited with the auth timeout; `None` refuses):
    let hooked = Server::builder()
        .listen("127.0.0.1:0")
        .auth_hook(move |req: AuthRequest| async move {
            let user = my_sessions.lookup(req.token?.as_str()).await?; // your logic
            Some(
                Identity::new(user.id)
                    .with_rooms(["team-*"])
                    .with_metadata(user.profile),
            )
        })
        .build()?
        .start()
        .await?;
    // The Rust client sends its token as a header; a provider refreshes it per connection.
    let client = Client::builder(server.url()).token(jwt).connect().await?;

    // The JWT's subject is the user; a token signed with another key is refused.
    assert_eq!(client.join("lobby").await?["you"]["userId"], "alice");
    client.close().await;
    let forged = mint("another-secret-entirely-0123456789", "alice");
    assert!(Client::builder(server.url())
        .token(forged)
        .connect()
        .await
        .is_err());
    // The hook admits a known session, limited to its rooms, with its metadata.
    let carol = Client::builder(hooked.url())
        .token("session-of-carol")
        .connect()
        .await?;
    let info = carol.join("team-red").await?;
    assert_eq!(info["you"]["userId"], "carol");
    assert_eq!(info["you"]["metadata"]["name"], "Carol", "{info}");
    let refused = carol.join("lobby").await.unwrap_err();
    assert!(refused.to_string().contains("forbidden"), "{refused}");
    carol.close().await;
    let unknown = Client::builder(hooked.url()).token("unknown-session");
    assert!(unknown.connect().await.is_err(), "the hook refuses (401)");
    server.shutdown().await;
    hooked.shutdown().await;
    Ok(())
}
