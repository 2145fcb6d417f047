//! Authentication configuration and the types every transport and binding shares:
//! how a token is checked (static list, JWT, host callback) and what it yields.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// How clients authenticate. Off by default.
#[derive(Clone, Default)]
pub enum AuthConfig {
    /// No authentication: `userId` comes from `join` (or is assigned).
    #[default]
    Off,
    /// A fixed table of token → userId, for small setups.
    Tokens(HashMap<String, String>),
    /// Signed JSON Web Tokens.
    Jwt(JwtConfig),
    /// A host callback decides (Rust closure, or a binding's Python/Node/C function).
    Hook(Arc<dyn AuthHook>),
}

impl AuthConfig {
    /// True unless auth is [`AuthConfig::Off`].
    pub fn is_on(&self) -> bool {
        !matches!(self, AuthConfig::Off)
    }
}

impl fmt::Debug for AuthConfig {
    // Never prints tokens or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthConfig::Off => f.write_str("Off"),
            AuthConfig::Tokens(t) => write!(f, "Tokens({} entries)", t.len()),
            AuthConfig::Jwt(j) => f.debug_tuple("Jwt").field(j).finish(),
            AuthConfig::Hook(_) => f.write_str("Hook"),
        }
    }
}

/// JWT verification settings.
#[derive(Clone)]
pub struct JwtConfig {
    /// The verification key; it also fixes the accepted algorithms.
    pub key: JwtKey,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` / `nbf`.
    pub leeway: Duration,
}

impl JwtConfig {
    /// HS256 with a shared secret, default leeway, no `aud`/`iss` check.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> JwtConfig {
        JwtConfig::with_key(JwtKey::Secret(secret.into()))
    }

    /// RS256 or ES256 with a PEM public key (the algorithm follows the key type).
    pub fn public_key_pem(pem: impl Into<Vec<u8>>) -> JwtConfig {
        JwtConfig::with_key(JwtKey::PublicKeyPem(pem.into()))
    }

    fn with_key(key: JwtKey) -> JwtConfig {
        JwtConfig {
            key,
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("key", &self.key)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// A JWT verification key.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 shared secret.
    Secret(Vec<u8>),
    /// PEM-encoded RSA (RS256) or EC P-256 (ES256) public key.
    PublicKeyPem(Vec<u8>),
}

impl fmt::Debug for JwtKey {
    // Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Secret(_) => f.write_str("Secret(..)"),
            JwtKey::PublicKeyPem(_) => f.write_str("PublicKeyPem(..)"),
        }
    }
}

/// What a transport knows when it asks who a token belongs to.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The token, if the client sent one (query, header or `auth` message).
    pub token: Option<String>,
    /// The browser `Origin` header, if any.
    pub origin: Option<String>,
    /// The client IP (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    /// The request path (without the query string).
    pub path: String,
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The userId this connection speaks as; a `join` under another one is `forbidden`.
    pub user_id: String,
    /// Rooms it may join: exact ids or `prefix*` patterns. `None` = any room.
    pub rooms: Option<Vec<String>>,
    /// Host data attached to the peer (visible as its `metadata` unless the join sets one).
    pub metadata: Option<Value>,
    /// When the credential expires; an unrefreshed connection is closed with 4401 then.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// An identity for `user_id` with no room restriction, metadata or expiry.
    pub fn new(user_id: impl Into<String>) -> Identity {
        Identity {
            user_id: user_id.into(),
            rooms: None,
            metadata: None,
            expires_at: None,
        }
    }
}

/// The future an [`AuthHook`] returns: `Some(identity)` admits, `None` refuses.
pub type AuthFuture = Pin<Box<dyn Future<Output = Option<Identity>> + Send + 'static>>;

/// A host callback that decides who a token belongs to. The server awaits it with
/// the auth timeout (a timeout refuses), so it never blocks the reactor.
pub trait AuthHook: Send + Sync + 'static {
    /// Checks one request.
    fn authenticate(&self, request: AuthRequest) -> AuthFuture;
}

impl<F, Fut> AuthHook for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Identity>> + Send + 'static,
{
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        Box::pin(self(request))
    }
}
