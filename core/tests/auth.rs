//! Authentication over real sockets, for every mode (static tokens, JWT HS256,
//! RS256, ES256, host hook): valid, invalid signature, expired, wrong audience,
//! room not allowed, first-message auth, auth timeout, refresh, expiry (4401),
//! identity rules of `join` (forbidden, takeover 4409) and resume.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard::{AuthRequest, Identity, JwtConfig, ServerBuilder, ServerHandle};

const SECRET: &str = "test-secret-do-not-use";
const OTHER_SECRET: &str = "another-secret";
const AUDIENCE: &str = "switchboard-tests";
const RSA_PRIVATE: &str = include_str!("fixtures/jwt-rs256-private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/jwt-rs256-public.pem");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Static,
    Hs256,
    Rs256,
    Es256,
    Hook,
}

const ALL: [Mode; 5] = [
    Mode::Static,
    Mode::Hs256,
    Mode::Rs256,
    Mode::Es256,
    Mode::Hook,
];
/// Modes whose tokens carry claims (expiry, audience, rooms).
const WITH_CLAIMS: [Mode; 4] = [Mode::Hs256, Mode::Rs256, Mode::Es256, Mode::Hook];

/// What a token says.
#[derive(Debug, Clone)]
struct Tok {
    sub: &'static str,
    /// Seconds from now.
    exp_in: i64,
    rooms: Option<Vec<&'static str>>,
    aud: &'static str,
    /// Signed with the wrong key (static mode: an unknown token).
    forged: bool,
}

fn tok(sub: &'static str) -> Tok {
    Tok {
        sub,
        exp_in: 600,
        rooms: None,
        aud: AUDIENCE,
        forged: false,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A P-256 key pair made once per test binary: (private PKCS#8 PEM, public SPKI PEM).
fn ec_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        (k.serialize_pem(), k.public_key_pem())
    })
}

fn other_ec_private() -> &'static String {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    })
}

fn claims(t: &Tok) -> Value {
    let mut c = json!({"sub": t.sub, "exp": unix_now() + t.exp_in, "aud": t.aud});
    if let Some(r) = &t.rooms {
        c["rooms"] = json!(r);
    }
    c
}

fn hs256(t: &Tok) -> String {
    let key = if t.forged { OTHER_SECRET } else { SECRET };
    encode(
        &Header::new(Algorithm::HS256),
        &claims(t),
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

impl Mode {
    fn token(self, t: &Tok) -> String {
        match self {
            Mode::Static => {
                if t.forged {
                    "tok-unknown".to_owned()
                } else {
                    format!("tok-{}", t.sub)
                }
            }
            Mode::Hs256 | Mode::Hook => hs256(t),
            Mode::Rs256 => {
                let key = if t.forged {
                    // Algorithm confusion: HS256 "signed" with the public key.
                    return encode(
                        &Header::new(Algorithm::HS256),
                        &claims(t),
                        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                    )
                    .unwrap();
                } else {
                    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
                };
                encode(&Header::new(Algorithm::RS256), &claims(t), &key).unwrap()
            }
            Mode::Es256 => {
                let pem = if t.forged {
                    other_ec_private()
                } else {
                    &ec_keys().0
                };
                let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
                encode(&Header::new(Algorithm::ES256), &claims(t), &key).unwrap()
            }
        }
    }

    fn configure(self, b: ServerBuilder) -> ServerBuilder {
        let jwt = |c: JwtConfig| c.audience(AUDIENCE).leeway(Duration::ZERO);
        match self {
            Mode::Static => b.auth_tokens([
                ("tok-alice", "alice"),
                ("tok-bob", "bob"),
                ("tok-carol", "carol"),
            ]),
            Mode::Hs256 => b.jwt(jwt(JwtConfig::hs256(SECRET))),
            Mode::Rs256 => b.jwt(jwt(JwtConfig::public_key_pem(RSA_PUBLIC))),
            Mode::Es256 => b.jwt(jwt(JwtConfig::public_key_pem(ec_keys().1.as_str()))),
            Mode::Hook => b.auth_hook(hook_verifying_hs256),
        }
    }

    async fn server(self) -> ServerHandle {
        start(self.configure(builder())).await
    }
}

/// A host hook as an application would write one: asynchronous (it waits as a
/// database lookup would), verifying the token with its own logic.
async fn hook_verifying_hs256(req: AuthRequest) -> Option<Identity> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_audience(&[AUDIENCE]);
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Value>(
        req.token?.as_str(),
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .ok()?;
    let c = data.claims;
    let mut id = Identity::new(c["sub"].as_str()?)
        .expires_at(UNIX_EPOCH + Duration::from_secs(c["exp"].as_u64()?));
    if let Some(rooms) = c["rooms"].as_array() {
        id = id.with_rooms(rooms.iter().filter_map(|r| r.as_str()));
    }
    Some(id)
}

fn ws_url(server: &ServerHandle, token: &str) -> String {
    format!("{}?token={token}", server.url())
}

async fn connect_token(server: &ServerHandle, token: &str) -> Result<Ws, Refused> {
    Ws::connect_with(&ws_url(server, token), &[]).await
}

async fn join(ws: &mut Ws, room: &str) -> Value {
    ws.send(json!({"type":"join","roomId":room})).await;
    let m = ws.recv().await;
    assert!(
        m["type"] == "room-info" || m["type"] == "error",
        "unexpected {m}"
    );
    m
}

#[tokio::test]
async fn valid_token_at_the_handshake_makes_the_subject_the_user() {
    for mode in ALL {
        let server = mode.server().await;
        // As a query parameter.
        let mut a = connect_token(&server, &mode.token(&tok("alice")))
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e:?}"));
        let info = join(&mut a, "r").await;
        assert_eq!(info["you"]["userId"], "alice", "{mode:?}: {info}");
        // As an Authorization header; an explicit matching userId is fine.
        let bearer = format!("Bearer {}", mode.token(&tok("bob")));
        let mut b = Ws::connect_with(server.url(), &[("authorization", &bearer)])
            .await
            .unwrap();
        b.send(json!({"type":"join","roomId":"r","userId":"bob"}))
            .await;
        let info = b.recv_type("room-info").await;
        assert_eq!(info["users"], json!(["alice"]), "{mode:?}");
        assert_eq!(a.recv_type("user-joined").await["userId"], "bob");
    }
}

#[tokio::test]
async fn invalid_signature_is_refused_with_401() {
    for mode in ALL {
        let server = mode.server().await;
        let forged = Tok {
            forged: true,
            ..tok("alice")
        };
        assert_eq!(
            connect_token(&server, &mode.token(&forged)).await.err(),
            Some(Refused::Status(401)),
            "{mode:?}"
        );
        let garbage = Ws::connect_with(server.url(), &[("authorization", "Bearer x.y.z")]).await;
        assert_eq!(garbage.err(), Some(Refused::Status(401)), "{mode:?}");
        // The server is fine after refusing.
        assert!(connect_token(&server, &mode.token(&tok("alice")))
            .await
            .is_ok());
    }
}

/// Every claims mode refuses `t` at the handshake with 401.
async fn refused_at_handshake(t: Tok) {
    for mode in WITH_CLAIMS {
        let server = mode.server().await;
        assert_eq!(
            connect_token(&server, &mode.token(&t)).await.err(),
            Some(Refused::Status(401)),
            "{mode:?} {t:?}"
        );
    }
}

#[tokio::test]
async fn expired_token_is_refused_with_401() {
    refused_at_handshake(Tok {
        exp_in: -30,
        ..tok("alice")
    })
    .await;
}

#[tokio::test]
async fn wrong_audience_is_refused_with_401() {
    refused_at_handshake(Tok {
        aud: "some-other-service",
        ..tok("alice")
    })
    .await;
}

#[tokio::test]
async fn jwt_issuer_is_checked_when_configured() {
    let server = start(
        builder().jwt(
            JwtConfig::hs256(SECRET)
                .issuer("https://auth.example")
                .leeway(Duration::ZERO),
        ),
    )
    .await;
    let mk = |iss: Option<&str>| {
        let mut c = json!({"sub":"alice","exp": unix_now() + 60});
        if let Some(i) = iss {
            c["iss"] = i.into();
        }
        encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    assert!(connect_token(&server, &mk(Some("https://auth.example")))
        .await
        .is_ok());
    for bad in [Some("https://evil.example"), None] {
        assert_eq!(
            connect_token(&server, &mk(bad)).await.err(),
            Some(Refused::Status(401))
        );
    }
    // A token without `exp` is refused too (required claim).
    let no_exp = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub":"alice","iss":"https://auth.example"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        connect_token(&server, &no_exp).await.err(),
        Some(Refused::Status(401))
    );
}

#[tokio::test]
async fn rooms_claim_restricts_joins() {
    for mode in WITH_CLAIMS {
        let server = mode.server().await;
        let t = Tok {
            rooms: Some(vec!["lobby", "team-*"]),
            ..tok("alice")
        };
        let mut a = connect_token(&server, &mode.token(&t)).await.unwrap();
        assert_eq!(join(&mut a, "lobby").await["type"], "room-info", "{mode:?}");
        assert_eq!(join(&mut a, "team-red").await["type"], "room-info");
        for denied in ["lobby2", "teams", "other"] {
            let e = join(&mut a, denied).await;
            assert_eq!(e["code"], "forbidden", "{mode:?} {denied}: {e}");
        }
        assert!(server
            .peers("other")
            .is_none_or(|p| p.iter().all(|x| x.user_id != "alice")));
    }
}

#[tokio::test]
async fn join_under_another_user_id_is_forbidden() {
    for mode in ALL {
        let server = mode.server().await;
        let mut a = connect_token(&server, &mode.token(&tok("alice")))
            .await
            .unwrap();
        let code = a
            .error_code(json!({"type":"join","roomId":"r","userId":"bob"}))
            .await;
        assert_eq!(code, "forbidden", "{mode:?}");
        assert!(server.peers("r").is_none(), "nobody joined");
    }
}

#[tokio::test]
async fn first_message_auth() {
    for mode in ALL {
        let server = mode.server().await;
        let mut a = Ws::connect(server.url()).await;
        // Nothing but `auth` (and ping) is served before it.
        let code = a.error_code(json!({"type":"join","roomId":"r"})).await;
        assert_eq!(code, "unauthorized", "{mode:?}");
        a.send(json!({"type":"ping","timestamp":1})).await;
        assert_eq!(a.recv_type("pong").await["timestamp"], 1);
        // `auth` then `join` sent back to back: with an (asynchronous) hook the join
        // waits for the answer instead of being refused.
        a.send(json!({"type":"auth","token": mode.token(&tok("alice")),"id":"a1"}))
            .await;
        a.send(json!({"type":"join","roomId":"r"})).await;
        let ack = a.recv().await;
        assert_eq!(
            (&ack["type"], &ack["id"]),
            (&json!("ack"), &json!("a1")),
            "{mode:?}"
        );
        let info = a.recv_type("room-info").await;
        assert_eq!(info["you"]["userId"], "alice", "{mode:?}");
    }
}

#[tokio::test]
async fn failed_first_message_auth_closes_4401() {
    for mode in ALL {
        let server = mode.server().await;
        let mut a = Ws::connect(server.url()).await;
        let forged = Tok {
            forged: true,
            ..tok("alice")
        };
        a.send(json!({"type":"auth","token": mode.token(&forged)}))
            .await;
        let e = a.recv_type("error").await;
        assert_eq!(e["code"], "unauthorized", "{mode:?}");
        assert_eq!(a.expect_close().await, 4401, "{mode:?}");
    }
}

#[tokio::test]
async fn auth_timeout_closes_4401() {
    for mode in ALL {
        let server = start(
            mode.configure(builder())
                .auth_timeout(Duration::from_millis(300)),
        )
        .await;
        let mut a = Ws::connect(server.url()).await;
        let e = a.recv_type("error").await;
        assert_eq!(e["code"], "unauthorized", "{mode:?}");
        assert_eq!(a.expect_close().await, 4401, "{mode:?}");
        // Authenticated in time: the timer does nothing.
        let mut b = Ws::connect(server.url()).await;
        b.send(json!({"type":"auth","token": mode.token(&tok("bob")),"id":1}))
            .await;
        assert_eq!(b.recv_type("ack").await["id"], 1);
        b.expect_silence(Duration::from_millis(600)).await;
        assert_eq!(join(&mut b, "r").await["type"], "room-info");
    }
}

#[tokio::test]
async fn refresh_extends_the_session() {
    for mode in WITH_CLAIMS {
        let server = mode.server().await;
        let short = Tok {
            exp_in: 2,
            ..tok("alice")
        };
        let mut a = connect_token(&server, &mode.token(&short)).await.unwrap();
        assert_eq!(join(&mut a, "r").await["type"], "room-info");
        a.send(json!({"type":"auth","token": mode.token(&tok("alice")),"id":"refresh"}))
            .await;
        assert_eq!(a.recv_type("ack").await["id"], "refresh", "{mode:?}");
        // Past the first token's expiry the connection still works.
        tokio::time::sleep(Duration::from_millis(3200)).await;
        a.send(json!({"type":"ping","timestamp":7})).await;
        assert_eq!(a.recv_type("pong").await["timestamp"], 7, "{mode:?}");
        // A refresh for another user, or an invalid one, is refused and changes nothing.
        let code = a
            .error_code(json!({"type":"auth","token": mode.token(&tok("bob"))}))
            .await;
        assert_eq!(code, "forbidden", "{mode:?}");
        let forged = Tok {
            forged: true,
            ..tok("alice")
        };
        let code = a
            .error_code(json!({"type":"auth","token": mode.token(&forged)}))
            .await;
        assert_eq!(code, "unauthorized", "{mode:?}");
        a.send(json!({"type":"ping","timestamp":8})).await;
        assert_eq!(a.recv_type("pong").await["timestamp"], 8);
    }
}

#[tokio::test]
async fn expiry_closes_4401_and_revokes_resume() {
    for mode in WITH_CLAIMS {
        let server = mode.server().await;
        let short = Tok {
            exp_in: 2,
            ..tok("alice")
        };
        let mut a = connect_token(&server, &mode.token(&short)).await.unwrap();
        let (session, resume_token) = a.session();
        join(&mut a, "r").await;
        let mut b = connect_token(&server, &mode.token(&tok("bob")))
            .await
            .unwrap();
        join(&mut b, "r").await;
        let e = a.recv_type("error").await;
        assert_eq!(e["code"], "unauthorized", "{mode:?}: {e}");
        assert_eq!(a.expect_close().await, 4401, "{mode:?}");
        assert_user_left(&b.recv_type("user-left").await, "alice", "closed");
        // The session is gone: a resume with a fresh token fails.
        let mut again = connect_token(&server, &mode.token(&tok("alice")))
            .await
            .unwrap();
        let code = again
            .error_code(
                json!({"type":"resume","sessionId":session,"resumeToken":resume_token,"lastSeq":0}),
            )
            .await;
        assert_eq!(code, "resume-failed", "{mode:?}");
    }
}

#[tokio::test]
async fn same_user_takes_over_with_4409() {
    for mode in ALL {
        let server = mode.server().await;
        let mut old = connect_token(&server, &mode.token(&tok("alice")))
            .await
            .unwrap();
        join(&mut old, "r").await;
        let mut bob = connect_token(&server, &mode.token(&tok("bob")))
            .await
            .unwrap();
        join(&mut bob, "r").await;
        let mut new = connect_token(&server, &mode.token(&tok("alice")))
            .await
            .unwrap();
        let info = join(&mut new, "r").await;
        assert_eq!(info["type"], "room-info", "{mode:?}: {info}");
        assert_eq!(info["users"], json!(["bob"]));
        assert_eq!(old.expect_close().await, 4409, "{mode:?}");
        assert_user_left(&bob.recv_type("user-left").await, "alice", "replaced");
        assert_eq!(bob.recv_type("user-joined").await["userId"], "alice");
        let peers = server.peers("r").unwrap();
        assert_eq!(peers.len(), 2);
    }
}

#[tokio::test]
async fn resume_needs_the_same_user() {
    let mode = Mode::Hs256;
    let server = mode.server().await;
    let mut a = connect_token(&server, &mode.token(&tok("alice")))
        .await
        .unwrap();
    let (session, resume_token) = a.session();
    join(&mut a, "r").await;
    a.kill();
    let resume =
        json!({"type":"resume","sessionId":session,"resumeToken":resume_token,"lastSeq":0});
    // Before auth: refused.
    let mut anon = Ws::connect(server.url()).await;
    assert_eq!(anon.error_code(resume.clone()).await, "unauthorized");
    // Another user holding the secret resume token still can not take it.
    let mut bob = connect_token(&server, &mode.token(&tok("bob")))
        .await
        .unwrap();
    assert_eq!(bob.error_code(resume.clone()).await, "resume-failed");
    // The same user can.
    let mut again = connect_token(&server, &mode.token(&tok("alice")))
        .await
        .unwrap();
    again.send(resume).await;
    assert_eq!(again.recv_type("resumed").await["sessionId"], session);
}

#[tokio::test]
async fn hook_sees_the_request_and_can_attach_rooms_and_metadata() {
    let seen: Arc<Mutex<Vec<AuthRequest>>> = Arc::default();
    let log = seen.clone();
    let server = start(builder().auth_hook(move |req: AuthRequest| {
        log.lock().unwrap().push(req.clone());
        async move {
            match req.token.as_deref() {
                Some("good") => Some(
                    Identity::new("alice")
                        .with_rooms(["room-*"])
                        .with_metadata(json!({"role":"moderator"})),
                ),
                _ => None,
            }
        }
    }))
    .await;
    let mut a = Ws::connect_with(
        &format!("{}?token=good", server.url()),
        &[("origin", "https://app.example")],
    )
    .await
    .unwrap();
    {
        let seen = seen.lock().unwrap();
        let r = seen.last().unwrap();
        assert_eq!(r.token.as_deref(), Some("good"));
        assert_eq!(r.origin.as_deref(), Some("https://app.example"));
        assert_eq!(r.ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(r.path, "/ws");
    }
    // The identity's metadata is authoritative: the client can not replace it.
    a.send(json!({"type":"join","roomId":"room-1","metadata":{"role":"admin"}}))
        .await;
    let info = a.recv_type("room-info").await;
    assert_eq!(info["you"]["metadata"], json!({"role":"moderator"}));
    assert_eq!(join(&mut a, "lobby").await["code"], "forbidden");
    // Without a token the hook is asked too (token: None); refusing lets the
    // client authenticate with a message.
    let mut b = Ws::connect(server.url()).await;
    assert_eq!(seen.lock().unwrap().last().unwrap().token, None);
    b.send(json!({"type":"auth","token":"bad"})).await;
    assert_eq!(b.expect_close().await, 4401);
    assert_eq!(
        Ws::connect_with(&format!("{}?token=bad", server.url()), &[])
            .await
            .err(),
        Some(Refused::Status(401))
    );
}

#[tokio::test]
async fn hook_that_hangs_or_panics_refuses() {
    let server = start(
        builder()
            .auth_timeout(Duration::from_millis(300))
            .auth_hook(|req: AuthRequest| async move {
                match req.token.as_deref() {
                    Some("hang") => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        None
                    }
                    Some("panic") => panic!("a bug in the host's hook"),
                    Some(u) => Some(Identity::new(u)),
                    None => None,
                }
            }),
    )
    .await;
    for token in ["hang", "panic"] {
        assert_eq!(
            connect_token(&server, token).await.err(),
            Some(Refused::Status(401)),
            "{token}"
        );
    }
    // The same by message; frames sent meanwhile are dropped with the connection.
    let mut a = Ws::connect(server.url()).await;
    a.send(json!({"type":"auth","token":"hang"})).await;
    a.send(json!({"type":"join","roomId":"r"})).await;
    assert_eq!(a.expect_close().await, 4401);
    assert!(server.peers("r").is_none());
    assert!(connect_token(&server, "carol").await.is_ok());
}

#[tokio::test]
async fn rust_client_authenticates_with_its_token() {
    let mode = Mode::Hs256;
    let server = mode.server().await;
    let client = switchboard::Client::builder(server.url())
        .token(mode.token(&tok("alice")))
        .connect()
        .await
        .unwrap();
    let info = client.join("r").await.unwrap();
    assert_eq!(info["you"]["userId"], "alice");
    client.close().await;
    let refused = switchboard::Client::builder(server.url())
        .token(mode.token(&Tok {
            forged: true,
            ..tok("alice")
        }))
        .connect()
        .await;
    match refused {
        Err(e) => assert_eq!(e.code(), "unauthorized", "{e}"),
        Ok(_) => panic!("a forged token connected"),
    }
}

#[tokio::test]
async fn bad_auth_configs_fail_at_build() {
    let bad = builder()
        .jwt(JwtConfig::public_key_pem("not a key"))
        .build();
    assert!(bad.is_err());
    let empty = builder()
        .auth_tokens(Vec::<(String, String)>::new())
        .build();
    assert!(empty.is_err());
}

#[tokio::test]
async fn binary_flags_turn_jwt_auth_on() {
    let (mut child, url) = spawn_binary(
        &[
            "--listen",
            "127.0.0.1:0",
            "--jwt-audience",
            AUDIENCE,
            "--jwt-leeway-ms",
            "0",
            "--auth-timeout-ms",
            "300",
        ],
        &[("SWITCHBOARD_JWT_SECRET", SECRET)],
    );
    let good = Mode::Hs256.token(&tok("alice"));
    let mut a = Ws::connect_with(&format!("{url}?token={good}"), &[])
        .await
        .unwrap();
    assert_eq!(join(&mut a, "r").await["you"]["userId"], "alice");
    let forged = Mode::Hs256.token(&Tok {
        forged: true,
        ..tok("bob")
    });
    assert_eq!(
        Ws::connect_with(&format!("{url}?token={forged}"), &[])
            .await
            .err(),
        Some(Refused::Status(401))
    );
    let mut late = Ws::connect(&url).await;
    assert_eq!(late.expect_close().await, 4401, "--auth-timeout-ms applies");
    let _ = child.kill();
    let _ = child.wait();
}
