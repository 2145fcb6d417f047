//! What a client is configured with: the fixed settings the driver reads, and
//! where its token comes from.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::backoff::Backoff;
use crate::error::Result;

/// The future a token provider returns: the token to present on this connection.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String>> + Send + 'static>>;

/// Where the token comes from.
#[derive(Clone)]
pub(crate) enum TokenSource {
    Static(String),
    /// Called before every connection attempt, so an expiring token is refreshed.
    Provider(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token itself.
        match self {
            TokenSource::Static(_) => f.write_str("Static(***)"),
            TokenSource::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

/// Everything the driver needs, fixed at `connect()`.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) user_id: Option<String>,
    pub(crate) token: Option<TokenSource>,
    pub(crate) display_name: Option<String>,
    pub(crate) metadata: Option<Value>,
    pub(crate) subprotocol: Option<String>,
    pub(crate) backoff: Backoff,
    /// `None`: retry forever.
    pub(crate) max_attempts: Option<u32>,
    pub(crate) stable_after: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) queue_max_messages: usize,
    pub(crate) queue_max_bytes: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) event_capacity: usize,
    pub(crate) ack_every: u32,
    pub(crate) ack_delay: Duration,
    /// Messages written but not yet acknowledged, at most.
    pub(crate) max_in_flight: usize,
    /// After a `rate-limited` error: how long to stop writing before writing the
    /// unacknowledged messages again.
    pub(crate) rate_limit_pause: Duration,
    /// Extra trusted root certificates (PEM) for `wss://`, besides the public roots.
    pub(crate) tls_roots_pem: Vec<Vec<u8>>,
    /// Built by `connect()` for `wss://` URLs.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}
