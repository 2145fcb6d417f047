//! Checking a credential: the verifier built once from an [`AuthConfig`] (static
//! table, JWT with its decoded keys, or the host hook) and the JWT claims it reads.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

use super::{
    AuthConfig, AuthError, AuthFuture, AuthHook, AuthRequest, Identity, JwtConfig, JwtKey,
    MAX_TOKEN_BYTES, MAX_USER_ID_BYTES,
};

/// The outcome of starting a check: immediate (static tokens, JWT) or a host future.
pub(crate) enum Check {
    Done(std::result::Result<Identity, AuthError>),
    Hook(AuthFuture),
}

/// An [`AuthConfig`] made ready for use: JWT keys parsed once, not per token.
pub(crate) enum Verifier {
    Off,
    Tokens(HashMap<String, String>),
    Jwt(Box<JwtVerifier>),
    Hook(Arc<dyn AuthHook>),
    /// The configuration could not be used (validated configs never get here):
    /// every credential is refused rather than let anyone in.
    Broken(String),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verifier::Off => "Off",
            Verifier::Tokens(_) => "Tokens",
            Verifier::Jwt(_) => "Jwt",
            Verifier::Hook(_) => "Hook",
            Verifier::Broken(_) => "Broken",
        })
    }
}

impl Verifier {
    pub(crate) fn new(config: &AuthConfig) -> Verifier {
        match config {
            AuthConfig::Off => Verifier::Off,
            AuthConfig::Tokens(t) => Verifier::Tokens(t.clone()),
            AuthConfig::Jwt(j) => match JwtVerifier::new(j) {
                Ok(v) => Verifier::Jwt(Box::new(v)),
                Err(e) => Verifier::Broken(e.to_string()),
            },
            AuthConfig::Hook(h) => Verifier::Hook(h.clone()),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        !matches!(self, Verifier::Off)
    }

    pub(crate) fn is_hook(&self) -> bool {
        matches!(self, Verifier::Hook(_))
    }

    /// Starts checking `request`.
    pub(crate) fn check(&self, request: AuthRequest) -> Check {
        let token = request.token.as_deref();
        if token.is_some_and(|t| t.len() > MAX_TOKEN_BYTES) {
            return Check::Done(Err(AuthError::Invalid(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            ))));
        }
        match self {
            Verifier::Off => Check::Done(Err(AuthError::Internal(
                "authentication is not configured".into(),
            ))),
            Verifier::Broken(why) => Check::Done(Err(AuthError::Internal(why.clone()))),
            Verifier::Hook(hook) => Check::Hook(hook.authenticate(request)),
            Verifier::Tokens(table) => Check::Done(match token {
                None => Err(AuthError::Missing),
                Some(t) => table
                    .get(t)
                    .map(|user| Identity::new(user.clone()))
                    .ok_or_else(|| AuthError::Invalid("unknown token".into())),
            }),
            Verifier::Jwt(jwt) => Check::Done(match token {
                None => Err(AuthError::Missing),
                Some(t) => jwt.verify(t),
            }),
        }
    }
}

/// The claims Switchboard reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<Value>,
}

pub(crate) struct JwtVerifier {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    leeway: Duration,
}

impl JwtVerifier {
    pub(crate) fn new(config: &JwtConfig) -> Result<JwtVerifier> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let bad =
            |what: &str, e: jsonwebtoken::errors::Error| Error::Config(format!("JWT {what}: {e}"));
        let (key, algorithms) = match &config.key {
            JwtKey::Secret(s) => {
                if s.is_empty() {
                    return Err(Error::Config("the JWT secret is empty".into()));
                }
                (DecodingKey::from_secret(s), vec![Algorithm::HS256])
            }
            JwtKey::PublicKeyPem(pem) => match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (k, vec![Algorithm::RS256]),
                Err(rsa) => match DecodingKey::from_ec_pem(pem) {
                    Ok(k) => (k, vec![Algorithm::ES256]),
                    Err(_) => return Err(bad("public key (neither RSA nor EC PEM)", rsa)),
                },
            },
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = config.leeway.as_secs() + u64::from(config.leeway.subsec_nanos() > 0);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Otherwise a token that names an audience would be refused.
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier {
            key,
            leeway: Duration::from_secs(validation.leeway),
            validation,
        })
    }

    fn verify(&self, token: &str) -> std::result::Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet (nbf)".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Invalid(format!("missing claim `{c}`"))
                }
                _ => AuthError::Invalid("malformed token".into()),
            },
        )?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_BYTES {
            return Err(AuthError::Invalid(format!(
                "`sub` must be 1 to {MAX_USER_ID_BYTES} bytes"
            )));
        }
        let expires_at = claims
            .exp
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map(|e| UNIX_EPOCH + Duration::from_secs_f64(e.min(1e12)) + self.leeway);
        Ok(Identity {
            user_id: claims.sub,
            rooms: claims.rooms,
            metadata: claims.metadata,
            expires_at,
        })
    }
}

/// Checks an auth configuration before any I/O (keys parse, tokens are sane).
pub(crate) fn validate(config: &AuthConfig) -> Result<()> {
    match config {
        AuthConfig::Off | AuthConfig::Hook(_) => Ok(()),
        AuthConfig::Jwt(j) => JwtVerifier::new(j).map(|_| ()),
        AuthConfig::Tokens(t) => {
            if t.is_empty() {
                return Err(Error::Config("the static token table is empty".into()));
            }
            for (token, user) in t {
                if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
                    return Err(Error::Config(format!(
                        "static tokens must be 1 to {MAX_TOKEN_BYTES} bytes"
                    )));
                }
                if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
                    return Err(Error::Config(format!(
                        "static token userIds must be 1 to {MAX_USER_ID_BYTES} bytes"
                    )));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token_from_request;
    use crate::protocol::url::percent_decode;

    #[test]
    fn room_patterns() {
        let id = Identity::new("u").with_rooms(["lobby", "team-*"]);
        assert!(id.may_join("lobby"));
        assert!(id.may_join("team-"));
        assert!(id.may_join("team-red"));
        assert!(!id.may_join("lobby2"));
        assert!(!id.may_join("teams"));
        assert!(Identity::new("u").with_rooms(["*"]).may_join("anything"));
        assert!(!Identity::new("u")
            .with_rooms(Vec::<String>::new())
            .may_join("x"));
        assert!(Identity::new("u").may_join("x"));
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            token_from_request(Some("a=1&token=abc%2Bd+e&b=2"), None, &[]).as_deref(),
            Some("abc+d e")
        );
        assert_eq!(
            token_from_request(None, Some("Bearer xyz"), &[]).as_deref(),
            Some("xyz")
        );
        assert_eq!(
            token_from_request(None, Some("bearer  xyz "), &[]).as_deref(),
            Some("xyz")
        );
        assert_eq!(token_from_request(None, Some("Basic xyz"), &[]), None);
        assert_eq!(
            token_from_request(Some("token=q"), Some("Bearer h"), &[]).as_deref(),
            Some("q"),
            "the query wins, as documented"
        );
        assert_eq!(token_from_request(Some("token="), None, &[]), None);
        let offered = ["webrtc-signaling".to_owned(), "bearer.e30.x-y_z".to_owned()];
        assert_eq!(
            token_from_request(None, None, &offered).as_deref(),
            Some("e30.x-y_z"),
            "a `bearer.` subprotocol entry carries the token"
        );
        assert_eq!(
            token_from_request(None, Some("Bearer h"), &offered).as_deref(),
            Some("h")
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%42"), "AB");
    }

    #[test]
    fn static_tokens() {
        let v = Verifier::new(&AuthConfig::Tokens(
            [("t1".to_owned(), "alice".to_owned())].into(),
        ));
        let check = |t: Option<&str>| match v.check(AuthRequest {
            token: t.map(str::to_owned),
            ..AuthRequest::default()
        }) {
            Check::Done(r) => r,
            Check::Hook(_) => panic!("static tokens are checked at once"),
        };
        assert_eq!(check(Some("t1")).unwrap().user_id, "alice");
        assert!(matches!(check(Some("t2")), Err(AuthError::Invalid(_))));
        assert_eq!(check(None), Err(AuthError::Missing));
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(check(Some(&long)), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(validate(&AuthConfig::Jwt(JwtConfig::public_key_pem(
            b"nope".to_vec()
        )))
        .is_err());
        assert!(validate(&AuthConfig::Jwt(JwtConfig::hs256(Vec::new()))).is_err());
        assert!(validate(&AuthConfig::Tokens(HashMap::new())).is_err());
        assert!(validate(&AuthConfig::Jwt(JwtConfig::hs256("s"))).is_ok());
        // A broken config refuses everything.
        let v = Verifier::new(&AuthConfig::Jwt(JwtConfig::public_key_pem(b"x".to_vec())));
        assert!(matches!(
            v.check(AuthRequest {
                token: Some("a.b.c".into()),
                ..AuthRequest::default()
            }),
            Check::Done(Err(AuthError::Internal(_)))
        ));
    }
}
