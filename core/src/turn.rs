//! TURN REST API credentials (the scheme coturn's `use-auth-secret` verifies):
//! username `expiry:userId`, credential base64(HMAC-SHA1(secret, username)), and
//! the `iceServers` list `room-info` carries.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;

use crate::config::TurnConfig;

/// base64(HMAC-SHA1(secret, username)).
pub fn credential(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length; this can not fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The username of a credential for `user_id` that expires at `expiry` (Unix
/// seconds): `expiry:userId`.
pub fn username(expiry: u64, user_id: &str) -> String {
    format!("{expiry}:{user_id}")
}

impl TurnConfig {
    /// The `iceServers` for `user_id` at `now`: STUN URLs as one entry without
    /// credentials, TURN URLs as one entry with a credential valid for `ttl`.
    pub fn ice_servers(&self, user_id: &str, now: SystemTime) -> Value {
        let (stun, turn): (Vec<&String>, Vec<&String>) =
            self.urls.iter().partition(|u| u.starts_with("stun"));
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(json!({ "urls": stun }));
        }
        if !turn.is_empty() {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let name = username(now + self.ttl.as_secs(), user_id);
            servers.push(json!({
                "urls": turn,
                "username": name,
                "credential": credential(self.secret.as_bytes(), &name),
            }));
        }
        Value::Array(servers)
    }

    /// Checks the settings before any I/O.
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        let fail = |m: &str| Err(crate::error::Error::Config(m.to_owned()));
        if self.secret.is_empty() {
            return fail("the TURN secret is empty");
        }
        if self.urls.is_empty() {
            return fail("TURN credentials need at least one URL (--turn-urls)");
        }
        let schemes = ["turn:", "turns:", "stun:", "stuns:"];
        if let Some(bad) = self
            .urls
            .iter()
            .find(|u| !schemes.iter().any(|s| u.starts_with(s)))
        {
            return fail(&format!(
                "TURN URL {bad:?} must start with turn:, turns:, stun: or stuns:"
            ));
        }
        if self.ttl.as_secs() == 0 {
            return fail("the TURN credential lifetime must be at least 1 s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202, test case 1: key 0x0b × 20, "Hi There" →
        // b617318655057264e28bc0b6fb378c8ef146be00.
        assert_eq!(
            credential(&[0x0b; 20], "Hi There"),
            "thcxhlUFcmTii8C2+zeMjvFGvgA="
        );
    }

    #[test]
    fn known_vectors() {
        // Computed independently: printf %s USER | openssl dgst -sha1 -hmac SECRET -binary | base64
        assert_eq!(
            credential(b"north-pole-secret", "1700000000:alice"),
            "BlMD9egkgN94t6m66y4XRc99g2I="
        );
        assert_eq!(
            credential(b"north-pole-secret", "1893456000:user-7f3a"),
            "k37BjriqmkWjArFJ5YKJyNrzywc="
        );
        assert_eq!(username(1700000000, "alice"), "1700000000:alice");
    }

    #[test]
    fn ice_servers_split_stun_and_turn() {
        let cfg = TurnConfig {
            secret: "north-pole-secret".into(),
            urls: vec![
                "stun:stun.example:3478".into(),
                "turn:turn.example:3478?transport=udp".into(),
                "turns:turn.example:5349".into(),
            ],
            ttl: Duration::from_secs(3600),
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_699_996_400);
        let v = cfg.ice_servers("alice", at);
        assert_eq!(
            v,
            json!([
                {"urls": ["stun:stun.example:3478"]},
                {"urls": ["turn:turn.example:3478?transport=udp", "turns:turn.example:5349"],
                 "username": "1700000000:alice",
                 "credential": "BlMD9egkgN94t6m66y4XRc99g2I="}
            ])
        );
        let only_turn = TurnConfig {
            urls: vec!["turn:t:3478".into()],
            ..cfg.clone()
        };
        assert_eq!(only_turn.ice_servers("a", at).as_array().unwrap().len(), 1);
        assert!(cfg.validate().is_ok());
        let bad = TurnConfig {
            urls: vec!["http://x".into()],
            ..cfg.clone()
        };
        assert!(bad.validate().is_err());
        let empty = TurnConfig {
            secret: String::new(),
            ..cfg
        };
        assert!(empty.validate().is_err());
    }
}
