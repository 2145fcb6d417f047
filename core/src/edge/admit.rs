//! Admission: from the facts of one upgrade request to "accept" (client IP,
//! identity, subprotocol, a counted connection slot) or "refuse" (an HTTP status).
//! Every host mode asks this, so origin, per-IP and global limits, draining,
//! trusted proxies, handshake auth and the refusal metrics exist once.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::debug;

use super::EdgeInner;
use crate::auth::{token_from_request, AuthRequest, Identity};
use crate::hub::Refusal;
use crate::protocol::url::{url_join, PathFields, UrlJoin};
use crate::protocol::{SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, SUBPROTOCOL_TOKEN_PREFIX};
use crate::proxy::forwarded_hops;

/// What a transport knows about one upgrade request. Build it with
/// [`UpgradeRequest::new`] and add every header ([`UpgradeRequest::header`]): the
/// kit picks out the ones it reads (`Origin`, `X-Forwarded-For`, `Forwarded`,
/// `X-Real-IP`, `Authorization`, `Sec-WebSocket-Protocol`).
#[derive(Clone, Default)]
pub struct UpgradeRequest {
    /// The TCP peer's address (`None` when the host can not tell, e.g. a Unix socket).
    pub peer: Option<IpAddr>,
    /// The request path, without the query string.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The room and user a host's own router read from the path (a FastAPI
    /// `/signaling/{roomId}/{userId}` route); `None`: the kit matches the path
    /// against the configured `path` list.
    pub path_fields: Option<PathFields>,
    origin: Option<String>,
    forwarded_for: Vec<String>,
    forwarded: Vec<String>,
    real_ip: Option<String>,
    authorization: Option<String>,
    protocols: Vec<String>,
    /// Charged to its IP's new-connection rate at `accept` already.
    pub(super) rated_at_accept: bool,
}

impl std::fmt::Debug for UpgradeRequest {
    // Never prints credentials (the query may carry `token=`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("peer", &self.peer)
            .field("path", &self.path)
            .field("origin", &self.origin)
            .field("forwarded_for", &self.forwarded_for)
            .field("forwarded", &self.forwarded)
            .field(
                "protocols",
                &self
                    .protocols
                    .iter()
                    .map(|p| match p.starts_with(SUBPROTOCOL_TOKEN_PREFIX) {
                        true => "bearer.***",
                        false => p.as_str(),
                    })
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl UpgradeRequest {
    /// A request from `peer` for `target` (a path with an optional `?query`).
    pub fn new(peer: Option<IpAddr>, target: &str) -> UpgradeRequest {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        UpgradeRequest {
            peer,
            path: path.to_owned(),
            query,
            ..UpgradeRequest::default()
        }
    }

    /// Adds one header line (names are case-insensitive; repeated lines add up
    /// where the header is a list). Headers the kit does not read are ignored.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        let value = value.trim();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("origin") {
            self.origin.get_or_insert_with(|| value.to_owned());
        } else if is("x-forwarded-for") {
            self.forwarded_for.push(value.to_owned());
        } else if is("forwarded") {
            self.forwarded.push(value.to_owned());
        } else if is("x-real-ip") {
            self.real_ip.get_or_insert_with(|| value.to_owned());
        } else if is("authorization") {
            self.authorization.get_or_insert_with(|| value.to_owned());
        } else if is("sec-websocket-protocol") {
            self.protocols
                .extend(value.split(',').map(|p| p.trim().to_owned()));
        }
        self
    }

    /// Adds every header of an iterator of `(name, value)` pairs.
    pub fn headers<'a>(&mut self, all: impl IntoIterator<Item = (&'a str, &'a str)>) -> &mut Self {
        for (name, value) in all {
            self.header(name, value);
        }
        self
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
}

/// Why an upgrade was refused: the HTTP answer to give instead of `101`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// 400, 401, 403, 429 or 503.
    pub status: u16,
    /// A short plain-text body.
    pub body: &'static str,
    /// Extra headers (`WWW-Authenticate: Bearer` with 401).
    pub headers: &'static [(&'static str, &'static str)],
}

impl Refused {
    pub(super) fn new(status: u16) -> Refused {
        Refused {
            status,
            body: if status == 400 {
                "bad room, userId or displayName in the URL\n"
            } else {
                "connection refused\n"
            },
            headers: match status {
                401 => &[("www-authenticate", "Bearer")],
                // Per-IP budgets refill within seconds.
                429 => &[("retry-after", "1")],
                _ => &[],
            },
        }
    }

    /// The standard reason phrase of the status.
    pub fn reason_phrase(&self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            429 => "Too Many Requests",
            _ => "Service Unavailable",
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason_phrase())
    }
}

/// How a connection's frames are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// JSON text frames (`webrtc-signaling`, or no subprotocol).
    #[default]
    Json,
    /// MessagePack binary frames (`webrtc-signaling.msgpack`).
    MessagePack,
}

/// An admitted upgrade: answer `101` (with [`Admitted::subprotocol`]), then
/// [`Admitted::open`] the connection. Dropping it gives the slot back.
#[derive(Debug)]
pub struct Admitted {
    pub(super) slot: Slot,
    ip: IpAddr,
    pub(super) origin: Option<String>,
    pub(super) path: String,
    pub(super) identity: Option<Identity>,
    pub(super) join: Option<UrlJoin>,
    subprotocol: Option<&'static str>,
}

impl Admitted {
    /// The client's IP after trusted-proxy resolution.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The subprotocol to select in the `101` answer: `webrtc-signaling` or
    /// `webrtc-signaling.msgpack`, whichever the client offered first; never a
    /// `bearer.` token entry.
    pub fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }

    /// The frame encoding the selected subprotocol means.
    pub fn encoding(&self) -> Encoding {
        match self.subprotocol {
            Some(SUBPROTOCOL_MSGPACK) => Encoding::MessagePack,
            _ => Encoding::Json,
        }
    }

    /// The room (and user) the upgrade URL joins at connect, if any.
    pub fn url_join(&self) -> Option<&UrlJoin> {
        self.join.as_ref()
    }

    /// Who the handshake's token belongs to (`None`: auth off, or the client
    /// authenticates with its first message).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }
}

/// One counted connection (server-wide and for its IP); dropping it gives
/// both back. Every open connection holds one: the key only, not the IP.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) edge: Arc<EdgeInner>,
    /// What the per-IP count is keyed by (IPv6: the prefix), as 16 bytes
    /// (IPv4 mapped): an `IpAddr` would take 24 with its tag and padding, in
    /// every connection's task.
    key: Ipv6Addr,
}

impl Slot {
    fn new(edge: Arc<EdgeInner>, key: IpAddr) -> Slot {
        let key = match key {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Slot { edge, key }
    }

    /// The key back as counted: [`EdgeInner::ip_key`] gives mapped IPv4 as IPv4.
    fn key(&self) -> IpAddr {
        match self.key.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(self.key),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let edge = &self.edge;
        let mut per_ip = edge.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let key = self.key();
        if let Some(n) = per_ip.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&key);
            }
        }
        drop(per_ip);
        if edge.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            edge.all_closed.notify_waiters();
        }
    }
}

/// Where a request without a known peer address is counted (one shared bucket:
/// the per-IP limit then holds for all of them together, never for none).
const UNKNOWN_PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

impl EdgeInner {
    /// The client's address: the peer's, or, from a trusted proxy, the one its
    /// forwarding headers name (`X-Forwarded-For`, else `Forwarded`, else `X-Real-IP`).
    pub(super) fn client_ip(&self, req: &UpgradeRequest) -> IpAddr {
        let peer = req.peer.unwrap_or(UNKNOWN_PEER);
        let hops: Vec<&str> = if req.forwarded_for.is_empty() {
            forwarded_hops(req.forwarded.iter().map(String::as_str))
        } else {
            req.forwarded_for.iter().map(String::as_str).collect()
        };
        self.proxies.client_ip(peer, hops, req.real_ip.as_deref())
    }

    /// Counts the refusal and gives its answer: at `accept` (the socket's
    /// address only) or at admission (`ip` after trusted proxies).
    pub(super) fn refuse(
        &self,
        why: Refusal,
        status: u16,
        peer: Option<IpAddr>,
        ip: IpAddr,
    ) -> Refused {
        self.hub.metrics().handshake_refused(why);
        debug!(?peer, %ip, status, ?why, "upgrade refused");
        if matches!(why, Refusal::Capacity | Refusal::Pending) {
            self.warn_at_capacity(why);
        }
        Refused::new(status)
    }

    /// An operator must learn that the server is full without a debug log; at
    /// most one line per 10 s, however many newcomers are refused.
    fn warn_at_capacity(&self, why: Refusal) {
        use std::sync::atomic::Ordering;
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.capacity_warned.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 10)
            && self
                .capacity_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                ?why,
                open = self.open.load(Ordering::Relaxed),
                max_conns = self.config.max_conns,
                max_pending = self.config.max_pending,
                "at capacity: refusing newcomers with 503 (counted in switchboard_handshakes_refused_total)"
            );
        }
    }

    /// The checks of PROTOCOL.md §2, in order: origin 403, new-connection rate
    /// 429, per-IP 429, capacity 503, draining 503; then the handshake token (401).
    pub(super) async fn admit(self: &Arc<Self>, req: &UpgradeRequest) -> Result<Admitted, Refused> {
        let ip = self.client_ip(req);
        let key = self.ip_key(ip);
        let config = &self.config;
        if let (false, Some(origin)) = (config.allowed_origins.is_empty(), req.origin()) {
            if !config.allowed_origins.iter().any(|o| o == origin) {
                return Err(self.refuse(Refusal::Origin, 403, req.peer, ip));
            }
        }
        if !self.charge_conn_rate(req, key) {
            return Err(self.refuse(Refusal::ConnRate, 429, req.peer, ip));
        }
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(key).or_insert(0);
            if config.max_conns_per_ip > 0 && *n >= config.max_conns_per_ip {
                if *n == 0 {
                    per_ip.remove(&key);
                }
                drop(per_ip);
                return Err(self.refuse(Refusal::PerIp, 429, req.peer, ip));
            }
            *n += 1;
        }
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        // From here on the slot is held; dropping it gives both counters back.
        let slot = Slot::new(self.clone(), key);
        if config.max_conns > 0 && open >= config.max_conns {
            return Err(self.refuse(Refusal::Capacity, 503, req.peer, ip));
        }
        if self.hub.is_draining() {
            return Err(self.refuse(Refusal::Draining, 503, req.peer, ip));
        }
        let auth = AuthRequest {
            token: token_from_request(
                req.query.as_deref(),
                req.authorization.as_deref(),
                &req.protocols,
            ),
            origin: req.origin.clone(),
            ip: Some(ip),
            path: req.path.clone(),
        };
        // Boxed: the check's state would otherwise sit in every caller's future.
        let identity = match Box::pin(self.hub.authenticate_handshake(&auth)).await {
            Ok(identity) => identity,
            Err(e) => {
                debug!(%ip, reason = e.reason(), "handshake token refused: {e}");
                return Err(self.refuse(Refusal::Unauthorized, 401, req.peer, ip));
            }
        };
        // Hosts whose own router picked the path (route and attach modes) may
        // serve paths outside the list: those join only by the query.
        let fields = match &req.path_fields {
            Some(fields) => fields.clone(),
            None => self.paths.matches(&req.path).unwrap_or_default(),
        };
        let join = match url_join(fields, req.query.as_deref()) {
            Ok(join) => join,
            Err(why) => {
                debug!(%ip, "{why}");
                return Err(self.refuse(Refusal::BadUrl, 400, req.peer, ip));
            }
        };
        let AuthRequest { origin, path, .. } = auth;
        // The client's order decides; a `bearer.` token entry is never selected.
        let subprotocol = req.protocols.iter().find_map(|p| {
            [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK]
                .into_iter()
                .find(|known| p.eq_ignore_ascii_case(known))
        });
        Ok(Admitted {
            slot,
            ip,
            origin,
            path,
            identity,
            join,
            subprotocol,
        })
    }
}
