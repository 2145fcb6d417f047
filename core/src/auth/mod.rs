//! Authentication: how a token is checked (static list, JWT, host callback), what it
//! yields (an [`Identity`]), and why it was refused ([`AuthError`]). Transport-free:
//! the hub runs these checks for every transport (see `Hub::authenticate`).
//!
//! # Flows (PROTOCOL.md §2, §5)
//!
//! - A token at the handshake (`?token=` or `Authorization: Bearer`) is checked
//!   before the upgrade; a refusal is HTTP 401 and no WebSocket.
//! - Without one, the connection opens unauthenticated and must send
//!   `{"type":"auth","token":…}` within `auth_timeout`; a failed `auth` or none in
//!   time closes it with 4401. Until then only `auth` and `ping` are served.
//! - `auth` on an authenticated connection refreshes the token (same userId; new
//!   expiry, and a room list that applies to later joins; current memberships
//!   stay). A token for another user is `forbidden`, an invalid one
//!   `unauthorized`; either way the current token stays in force. A token that
//!   expires unrefreshed closes the connection with 4401 and ends its session
//!   (no resume).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::protocol::url::query_param;
use crate::protocol::SUBPROTOCOL_TOKEN_PREFIX;

mod verify;

pub(crate) use verify::{validate, Check, Verifier};

/// Longest accepted token, in bytes: bounds the work an unauthenticated client can
/// ask for (a JWT with a few claims is well under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest accepted userId (token subject), in bytes, as for `join.userId`.
const MAX_USER_ID_BYTES: usize = 256;

/// How clients authenticate. Off by default.
#[derive(Clone, Default)]
pub enum AuthConfig {
    /// No authentication: `userId` comes from `join` (or is assigned).
    #[default]
    Off,
    /// A fixed table of token → userId, for small setups. Such identities never
    /// expire and may join any room.
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
///
/// Claims: `sub` (required) is the userId; `exp` (required) the expiry; `nbf` is
/// honoured; `rooms` (optional array of room ids or `prefix*` patterns) restricts
/// joins; `metadata` (optional, any JSON) becomes the peer's metadata.
#[derive(Clone)]
pub struct JwtConfig {
    /// The verification key; it also fixes the accepted algorithms.
    pub key: JwtKey,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` / `nbf` (whole seconds; rounded up).
    pub leeway: Duration,
}

impl JwtConfig {
    /// HS256 with a shared secret, default leeway (30 s), no `aud`/`iss` check.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> JwtConfig {
        JwtConfig::with_key(JwtKey::Secret(secret.into()))
    }

    /// RS256 or ES256 with a PEM public key (the algorithm follows the key type).
    pub fn public_key_pem(pem: impl Into<Vec<u8>>) -> JwtConfig {
        JwtConfig::with_key(JwtKey::PublicKeyPem(pem.into()))
    }

    /// Requires this `aud`.
    pub fn audience(mut self, audience: impl Into<String>) -> JwtConfig {
        self.audience = Some(audience.into());
        self
    }

    /// Requires this `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> JwtConfig {
        self.issuer = Some(issuer.into());
        self
    }

    /// Clock skew allowed on `exp` / `nbf`.
    pub fn leeway(mut self, leeway: Duration) -> JwtConfig {
        self.leeway = leeway;
        self
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
#[derive(Clone, Default)]
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

impl fmt::Debug for AuthRequest {
    // Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("origin", &self.origin)
            .field("ip", &self.ip)
            .field("path", &self.path)
            .finish()
    }
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The userId this connection speaks as; a `join` under another one is `forbidden`.
    pub user_id: String,
    /// Rooms it may join: exact ids or `prefix*` patterns (`*` alone: any room).
    /// `None` = any room.
    pub rooms: Option<Vec<String>>,
    /// Host data attached to the peer. When set it is the peer's `metadata` and a
    /// `metadata` in `join` is ignored: data the server vouches for must not be
    /// replaceable by the client.
    pub metadata: Option<Value>,
    /// When the credential expires; an unrefreshed connection is closed with 4401
    /// then. For JWTs this is `exp` plus the configured leeway.
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

    /// Restricts the rooms (exact ids or `prefix*` patterns).
    pub fn with_rooms<I: IntoIterator<Item = S>, S: Into<String>>(mut self, rooms: I) -> Self {
        self.rooms = Some(rooms.into_iter().map(Into::into).collect());
        self
    }

    /// Attaches metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether this identity may join `room_id`.
    pub fn may_join(&self, room_id: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(patterns) => patterns.iter().any(|p| room_matches(p, room_id)),
        }
    }

    /// Whether the credential has expired at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// `pattern` is an exact room id, or a prefix followed by `*`.
fn room_matches(pattern: &str, room_id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room_id.starts_with(prefix),
        None => pattern == room_id,
    }
}

/// Why a credential was refused. Every variant closes the connection with 4401 (or
/// answers the upgrade with 401); `reason()` labels the `auth_failures` metric.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No token where one is required.
    Missing,
    /// Bad signature, malformed token, wrong audience/issuer, unknown static token.
    Invalid(String),
    /// The token's expiry has passed.
    Expired,
    /// The host callback refused it.
    Refused,
    /// The host callback did not answer within the auth timeout (or no `auth`
    /// message came in time).
    Timeout,
    /// The host callback panicked, or the auth configuration is unusable.
    Internal(String),
}

impl AuthError {
    /// A short label: `missing`, `invalid`, `expired`, `refused`, `timeout`, `internal`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Expired => "expired",
            AuthError::Refused => "refused",
            AuthError::Timeout => "timeout",
            AuthError::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("a token is required"),
            AuthError::Invalid(why) => write!(f, "invalid token: {why}"),
            AuthError::Expired => f.write_str("the token has expired"),
            AuthError::Refused => f.write_str("the token was refused"),
            AuthError::Timeout => f.write_str("authentication timed out"),
            AuthError::Internal(why) => write!(f, "authentication failed: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// The future an [`AuthHook`] returns: `Some(identity)` admits, `None` refuses.
pub type AuthFuture = Pin<Box<dyn Future<Output = Option<Identity>> + Send + 'static>>;

/// A host callback that decides who a token belongs to. The hub awaits it with the
/// auth timeout (a timeout refuses) on a task of its own, so it never blocks the
/// reactor or the transport; a panic in it refuses (and is logged).
///
/// It is called with `token: None` at a handshake that carried no token (so a host
/// can admit by origin or address alone); returning `None` then lets the client
/// authenticate with a first `auth` message instead.
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

/// Whether two secrets are equal, in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of a handshake: `?token=` in the query string, else
/// `Authorization: Bearer …`, else a `bearer.<token>` entry of
/// `Sec-WebSocket-Protocol` (the one header a browser can set, and one that
/// stays out of access logs). For transports (the built-in server and bindings).
pub fn token_from_request(
    query: Option<&str>,
    authorization: Option<&str>,
    protocols: &[String],
) -> Option<String> {
    let from_header = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let from_protocol = || {
        protocols
            .iter()
            .find_map(|p| p.strip_prefix(SUBPROTOCOL_TOKEN_PREFIX))
            .map(str::to_owned)
    };
    let from_query = || query.and_then(|q| query_param(q, "token"));
    from_query()
        .or(from_header)
        .or_else(from_protocol)
        .filter(|t| !t.is_empty())
}
