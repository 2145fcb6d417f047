//! Switchboard: WebRTC signaling over WebSocket — a server that puts peers into rooms
//! and relays offer/answer/candidate between them, and a client that survives the
//! network. See `docs/PROTOCOL.md` for the wire contract.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod error;
pub mod event;
pub mod hub;
pub mod protocol;
pub mod proxy;
pub mod server;
pub mod turn;

pub use auth::{AuthConfig, AuthError, AuthHook, AuthRequest, Identity, JwtConfig, JwtKey};
pub use client::{Client, ClientBuilder, EventStream, Reply};
pub use config::{ServerConfig, TlsConfig, TurnConfig};
pub use edge::{Edge, EdgeConnection, Encoding, Liveness, UpgradeRequest};
pub use error::{Error, ErrorCode, Result};
pub use event::Event;
pub use hub::{ConnectInfo, Connection, Hub, PeerInfo, RoomInfo};
pub use server::{Server, ServerBuilder, ServerHandle};
