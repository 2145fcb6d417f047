//! The operator API against its documents: every response matches the OpenAPI
//! document the server serves, and every `curl` line of docs/API.md runs,
//! standalone and on a two-node cluster over a real Redis.

mod common;

use common::binary::{Binary, KEY};
use common::redis::Redis;
use common::Ws;
use serde_json::{json, Value};

/// A minimal check of a value against the OpenAPI document's schema subset
/// (type, nullable, required, properties, items, `$ref`).
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    if v.is_null() {
        return match schema["nullable"].as_bool() {
            Some(true) => Ok(()),
            _ if schema.get("type").is_none() => Ok(()),
            _ => Err(format!("{at}: null where the schema says {schema}")),
        };
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_u64() || v.is_i64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(other) => return Err(format!("{at}: unknown type {other}")),
    };
    if !ok {
        return Err(format!("{at}: {v} is not {}", schema["type"]));
    }
    for req in schema["required"].as_array().into_iter().flatten() {
        let key = req.as_str().unwrap();
        if v.get(key).is_none() {
            return Err(format!("{at}: `{key}` missing in {v}"));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, sub) in props {
            if let Some(x) = v.get(k) {
                conforms(doc, sub, x, &format!("{at}.{k}"))?;
            }
        }
        if schema.get("additionalProperties").is_none() {
            for k in v.as_object().unwrap().keys() {
                if !props.contains_key(k) {
                    return Err(format!("{at}: `{k}` is not in the document"));
                }
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, x) in list.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn responses_match_the_openapi_document() {
    let sb = Binary::start(&["--api-key", KEY]);
    let (status, doc) = sb.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let mut alice = Ws::joined(&sb.ws_url(), "doc", "alice").await;
    let _bob = Ws::joined(&sb.ws_url(), "doc", "bob").await;
    alice.recv_type("user-joined").await;
    let schema = |path: &str, method: &str, status: &str| {
        let op = &doc["paths"][path][method]["responses"][status];
        let op = match op["$ref"].as_str() {
            Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
            None => op,
        };
        op["content"]["application/json"]["schema"].clone()
    };
    let cases: Vec<(&str, &str, &str, Option<Value>, &str)> = vec![
        ("GET", "/info", "/info", None, "200"),
        ("GET", "/rooms?limit=1", "/rooms", None, "200"),
        ("GET", "/rooms/doc", "/rooms/{roomId}", None, "200"),
        ("GET", "/rooms/none", "/rooms/{roomId}", None, "404"),
        (
            "POST",
            "/rooms/doc/broadcast",
            "/rooms/{roomId}/broadcast",
            Some(json!({"type": "t"})),
            "200",
        ),
        (
            "POST",
            "/rooms/doc/broadcast",
            "/rooms/{roomId}/broadcast",
            Some(json!([])),
            "400",
        ),
        (
            "POST",
            "/rooms/doc/users/bob/send",
            "/rooms/{roomId}/users/{userId}/send",
            Some(json!({"type": "t"})),
            "200",
        ),
        (
            "POST",
            "/rooms/doc/users/x/send",
            "/rooms/{roomId}/users/{userId}/send",
            Some(json!({"type": "t"})),
            "404",
        ),
        (
            "POST",
            "/rooms/doc/users/alice/kick",
            "/rooms/{roomId}/users/{userId}/kick",
            None,
            "200",
        ),
    ];
    for (method, path, documented, body, status) in cases {
        let body = body.map(|b| b.to_string());
        let (got, v) = sb
            .call(
                method,
                &format!("/api/v1{path}"),
                Some(KEY),
                body.as_deref(),
            )
            .await;
        assert_eq!(got.to_string(), status, "{method} {path}: {v}");
        let s = schema(documented, &method.to_lowercase(), status);
        assert!(
            !s.is_null(),
            "{method} {documented} {status} is not documented"
        );
        conforms(&doc, &s, &v, path).unwrap();
    }
    let (got, v) = sb.call("GET", "/api/v1/info", None, None).await;
    assert_eq!(got, 401);
    conforms(&doc, &schema("/info", "get", "401"), &v, "401").unwrap();
}

/// The `curl` lines of docs/API.md, run in order against `sb` while room
/// `lobby` holds alice and bob: each must answer 2xx.
async fn run_doc_examples(sb: &Binary) {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md")).unwrap();
    let lines: Vec<&str> = docs
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert!(lines.len() >= 7, "docs/API.md shows every endpoint");
    for line in lines {
        let method = if line.contains("-X POST") {
            "POST"
        } else {
            "GET"
        };
        let body = line
            .split_once("-d '")
            .map(|(_, rest)| rest.split_once('\'').unwrap().0);
        let url = line.split_whitespace().last().unwrap().trim_matches('"');
        let path = url
            .strip_prefix("$SB")
            .unwrap_or_else(|| panic!("{line}: the URL starts with $SB"));
        let key = line.contains("Bearer $KEY").then_some(KEY);
        let (status, v) = sb.call(method, path, key, body).await;
        assert!((200..300).contains(&status), "{line}: {status} {v}");
    }
}

#[tokio::test]
async fn the_curl_examples_of_the_docs_run_standalone() {
    let sb = Binary::start(&["--api-key", KEY]);
    let mut alice = Ws::joined(&sb.ws_url(), "lobby", "alice").await;
    let _bob = Ws::joined(&sb.ws_url(), "lobby", "bob").await;
    alice.recv_type("user-joined").await;
    run_doc_examples(&sb).await;
}

#[tokio::test]
async fn the_curl_examples_of_the_docs_run_on_a_cluster() {
    let redis = Redis::start();
    let (a, b) = Binary::cluster_pair(&redis).await;
    // alice on node A, bob on node B; the examples run against node B.
    let (mut alice, _bob) = common::binary::span(&a, &b, "lobby").await;
    run_doc_examples(&b).await;
    // The kick of the examples reached alice on the other node.
    assert_eq!(alice.expect_close().await, 4403);
    drop(redis);
}
