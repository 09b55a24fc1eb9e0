//! The real-time gateway: `GET /ws`, the native WebSocket protocol (`docs/protocol.md`).
//!
//! A client authenticates with its access token (the `Authorization` header, `?token=`
//! for browsers, or a first `auth` frame within `auth_timeout_secs`), subscribes to
//! conversations (optionally from the last sequence number it saw: it then receives
//! every message it missed, in order, before live ones), and sends, reads history and
//! marks read with the permissions of the REST API. Each connection counts as a device of
//! its user's presence.
//!
//! Delivery: the engine's events feed a hub ([`hub`]) that serializes a message once and
//! queues the shared frame to every subscribed connection of this node; a connection's
//! writer keeps each conversation's sequence numbers gapless (a missing one is read from
//! the store) and without duplicates. A full queue closes the connection as a slow
//! consumer; the client resumes.

mod hub;
pub mod protocol;
mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use xcore_core::Routes;
use xcore_core::config::Problems;
use xcore_core::http::ApiError;
use xcore_middleware::{CurrentUser, Gate, Rejection};

use crate::Engine;

/// The close codes the gateway uses, documented in `docs/protocol.md`.
pub mod close {
    /// The client or the server ended the session normally.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down: resume on another node or after the restart.
    pub const GOING_AWAY: u16 = 1001;
    /// The store cannot be reached: try again.
    pub const UNAVAILABLE: u16 = 1011;
    /// No frame from the client (not even a pong) for `idle_timeout_secs`.
    pub const IDLE: u16 = 4000;
    /// No valid token in time, or a token for another account.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Too many invalid or rate-limited frames.
    pub const POLICY: u16 = 4002;
    /// The connection's send queue was full: resume from the last sequence number seen.
    pub const SLOW: u16 = 4008;
    /// The node or the user has the maximum of connections.
    pub const TOO_MANY: u16 = 4009;

    /// The reason sent with `code`.
    pub fn reason(code: u16) -> &'static str {
        match code {
            GOING_AWAY => "the server is shutting down",
            UNAVAILABLE => "messaging is unavailable; try again",
            IDLE => "idle for too long",
            UNAUTHORIZED => "not authenticated",
            POLICY => "too many invalid frames",
            SLOW => "too slow to receive: resume from the last sequence number seen",
            TOO_MANY => "too many connections",
            _ => "",
        }
    }
}

/// `[messaging.gateway]`: the WebSocket gateway's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Whether `GET /ws` is served (default `true`).
    pub enabled: bool,
    /// The largest frame a client may send, in bytes (default 65,536).
    pub max_frame_bytes: usize,
    /// Frames waiting to be sent to one connection before it is closed as a slow
    /// consumer (default 1,024).
    pub queue: usize,
    /// The socket's read and write buffer sizes, in bytes (default 4,096).
    pub buffer_bytes: usize,
    /// Seconds between the server's pings (default 25).
    pub ping_secs: u64,
    /// Seconds without any frame from the client before it is closed (default 60).
    pub idle_timeout_secs: u64,
    /// Seconds a client without a token in its request has to send an `auth` frame
    /// (default 5).
    pub auth_timeout_secs: u64,
    /// Frames per second a connection may send, on average (default 50)…
    pub frames_per_sec: u32,
    /// …and at once (default 100).
    pub frames_burst: u32,
    /// Connections one user may hold on a node (default 16).
    pub max_connections_per_user: usize,
    /// Connections a node accepts (default 100,000).
    pub max_connections: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_frame_bytes: 65_536,
            queue: 1_024,
            buffer_bytes: 4_096,
            ping_secs: 25,
            idle_timeout_secs: 60,
            auth_timeout_secs: 5,
            frames_per_sec: 50,
            frames_burst: 100,
            max_connections_per_user: 16,
            max_connections: 100_000,
        }
    }
}

impl GatewayConfig {
    /// Adds what is wrong with the values, under `gateway.`.
    pub fn validate(&self, problems: &mut Problems) {
        for (key, value) in [
            ("gateway.max_frame_bytes", self.max_frame_bytes),
            ("gateway.queue", self.queue),
            ("gateway.buffer_bytes", self.buffer_bytes),
            ("gateway.max_connections_per_user", self.max_connections_per_user),
            ("gateway.max_connections", self.max_connections),
        ] {
            problems.check(value > 0, key, "must be at least 1");
        }
        for (key, value) in [
            ("gateway.ping_secs", self.ping_secs),
            ("gateway.idle_timeout_secs", self.idle_timeout_secs),
            ("gateway.auth_timeout_secs", self.auth_timeout_secs),
            ("gateway.frames_per_sec", u64::from(self.frames_per_sec)),
        ] {
            problems.check(value > 0, key, "must be at least 1");
        }
        problems.check(
            self.frames_burst >= self.frames_per_sec.max(1),
            "gateway.frames_burst",
            "must be at least `frames_per_sec`",
        );
        problems.check(
            self.idle_timeout_secs > self.ping_secs,
            "gateway.idle_timeout_secs",
            "must be longer than `ping_secs`, or every client would be idle",
        );
    }

    fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_secs)
    }

    fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_secs)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    fn frames_burst(&self) -> f64 {
        f64::from(self.frames_burst)
    }
}

/// The gateway of one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    gate: Gate,
    config: GatewayConfig,
    hub: Arc<hub::Hub>,
    next_id: AtomicU64,
}

impl Gateway {
    /// A gateway over `engine`, authenticating with `gate`. Nothing is delivered until
    /// [`start`](Self::start).
    pub fn new(engine: Engine, gate: Gate) -> Self {
        let config = engine.config().gateway.clone();
        let inner = Inner { engine, gate, config, hub: Arc::default(), next_id: AtomicU64::new(1) };
        Self { inner: Arc::new(inner) }
    }

    /// Starts delivering the engine's events to the connections (in a task of the
    /// current runtime).
    pub fn start(&self) {
        hub::start(&self.inner.hub, &self.inner.engine);
    }

    /// Closes every connection with 1001 (going away), then waits up to `within` for them
    /// to be gone: clients resume on another node, or on this one once it is back.
    pub async fn shutdown(&self, within: Duration) {
        for connection in self.inner.hub.connections() {
            connection.closer.close(close::GOING_AWAY);
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.inner.hub.len() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Connections open on this node.
    pub fn connections(&self) -> usize {
        self.inner.hub.len()
    }

    /// `GET /` of the gateway, to mount at `/ws` with `AppBuilder::endpoint`.
    pub fn routes(&self) -> Routes {
        Routes::new().routes(utoipa_axum::routes!(upgrade)).with_state(self.clone())
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    fn hub(&self) -> &hub::Hub {
        &self.inner.hub
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn authenticate(&self, token: &str) -> Option<CurrentUser> {
        self.inner.gate.authenticate(token).ok()
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Opens a WebSocket session speaking the native protocol (`docs/protocol.md`). The
/// access token comes in the `Authorization` header, in `?token=` (browsers cannot set
/// headers on a WebSocket), or in a first `auth` frame.
#[utoipa::path(get, path = "/", tag = "messaging",
    params(("token" = Option<String>, Query, description = "the access token, for clients that cannot set headers")),
    security((), ("bearer" = [])),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 401, description = "`invalid_token`, `token_expired` or `session_revoked`: a token was given and is not valid"),
        (status = 426, description = "`upgrade_required`: not a WebSocket handshake"),
    ))]
async fn upgrade(
    State(gateway): State<Gateway>,
    parts: Parts,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let user = match gateway.gate().user_of(&parts) {
        Ok(user) => Some(user),
        Err(Rejection::Missing) => match query.ok().and_then(|Query(query)| query.token) {
            Some(token) => match gateway.gate().authenticate(&token) {
                Ok(user) => Some(user),
                Err(rejection) => return rejection.into_response(),
            },
            None => None,
        },
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(upgrade) = upgrade else {
        let error = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint speaks WebSocket: send a WebSocket handshake",
        );
        return ([(header::UPGRADE, HeaderValue::from_static("websocket"))], error).into_response();
    };
    let config = gateway.config();
    upgrade
        .read_buffer_size(config.buffer_bytes)
        .write_buffer_size(config.buffer_bytes)
        .max_write_buffer_size(config.buffer_bytes.max(config.max_frame_bytes) * 4)
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes)
        .on_upgrade(move |socket| socket::serve(socket, gateway, user))
}
