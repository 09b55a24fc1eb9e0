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

mod broker;
mod connection;
mod hub;
pub mod protocol;
mod socket;
mod socketio;
mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use xcore_core::Routes;
use xcore_core::config::Problems;
use xcore_core::http::ApiError;
use xcore_middleware::{CurrentUser, Gate, Rejection};

use crate::Engine;

/// Bytes of frames a socket gathers before it writes them, unless its batch ends first:
/// a busy socket keeps a write buffer of about this size.
const WRITE_BATCH_BYTES: usize = 4_096;

pub use broker::BrokerKind;

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
    /// No valid token in time, a token for another account, or the session or account
    /// was ended.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The token expired and no fresh one came within `token_grace_secs`.
    pub const TOKEN_EXPIRED: u16 = 4003;
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
            TOKEN_EXPIRED => "the access token expired: reconnect with a fresh one",
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
    /// The socket's read buffer, in bytes (default 1,024): each open socket holds one.
    /// Frames longer than the buffer still pass (up to `max_frame_bytes`), in several
    /// reads.
    pub buffer_bytes: usize,
    /// Milliseconds a connection's deliveries wait to share one write with those that
    /// follow, once a write went out (default 20; 0 writes each at once). The first
    /// delivery after a quiet spell and every reply go out at once: only a connection
    /// receiving faster than one write per window has its deliveries batched, which saves
    /// the server and the client a system call per message.
    pub coalesce_ms: u64,
    /// Seconds between the server's pings (default 25).
    pub ping_secs: u64,
    /// Seconds without any frame from the client before it is closed (default 60).
    pub idle_timeout_secs: u64,
    /// Seconds a client without a token in its request has to send an `auth` frame
    /// (default 5).
    pub auth_timeout_secs: u64,
    /// Seconds between checks of a socket's token: its expiry, and whether its session or
    /// account was ended (default 10).
    pub token_check_secs: u64,
    /// Seconds a socket whose token expired has to send a fresh one in an `auth` frame
    /// before it is closed with 4003 (default 30).
    pub token_grace_secs: u64,
    /// Frames per second a connection may send, on average (default 50)…
    pub frames_per_sec: u32,
    /// …and at once (default 100).
    pub frames_burst: u32,
    /// Latest messages of a conversation kept in memory, so a resume within them does not
    /// read the store (default 64; 0 keeps none)…
    pub resume_window: usize,
    /// …for this many recently active conversations at most (default 1,024: with
    /// messages of a few hundred bytes, some 25 MB at most).
    pub resume_conversations: u64,
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
            buffer_bytes: 1_024,
            coalesce_ms: 20,
            ping_secs: 25,
            idle_timeout_secs: 60,
            auth_timeout_secs: 5,
            token_check_secs: 10,
            token_grace_secs: 30,
            frames_per_sec: 50,
            frames_burst: 100,
            resume_window: 64,
            resume_conversations: 1_024,
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
            ("gateway.token_check_secs", self.token_check_secs),
            ("gateway.token_grace_secs", self.token_grace_secs),
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
            self.coalesce_ms <= 1_000,
            "gateway.coalesce_ms",
            "must be at most 1,000: deliveries would wait longer than a second",
        );
        problems.check(
            self.idle_timeout_secs > self.ping_secs,
            "gateway.idle_timeout_secs",
            "must be longer than `ping_secs`, or every client would be idle",
        );
    }

    /// `upgrade` with the socket's buffers and limits: small buffers, each open socket
    /// holding them.
    fn tune(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        upgrade
            .read_buffer_size(self.buffer_bytes)
            .write_buffer_size(self.buffer_bytes.max(WRITE_BATCH_BYTES))
            .max_write_buffer_size(self.buffer_bytes.max(self.max_frame_bytes) * 4)
            .max_message_size(self.max_frame_bytes)
            .max_frame_size(self.max_frame_bytes)
    }

    fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_secs)
    }

    fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }

    fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_secs)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    fn token_check(&self) -> Duration {
        Duration::from_secs(self.token_check_secs)
    }

    fn token_grace(&self) -> Duration {
        Duration::from_secs(self.token_grace_secs)
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
    sessions: socketio::Sessions,
}

impl Gateway {
    /// A gateway over `engine`, authenticating with `gate`. Nothing is delivered until
    /// [`start`](Self::start).
    pub fn new(engine: Engine, gate: Gate) -> Self {
        let config = engine.config().gateway.clone();
        let presence_ttl = Duration::from_secs(engine.config().presence_ttl_secs);
        let (window, conversations) = (config.resume_window, config.resume_conversations);
        let hub = Arc::new(hub::Hub::new(node_id(), window, conversations, presence_ttl));
        let sessions = socketio::Sessions::default();
        let inner = Inner { engine, gate, config, hub, next_id: AtomicU64::new(1), sessions };
        Self { inner: Arc::new(inner) }
    }

    /// Connects to the broker `messaging.broker` names, if any, and starts delivering the
    /// engine's events and the other nodes' to the connections (in tasks of the current
    /// runtime).
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached.
    pub async fn start(&self) -> Result<(), String> {
        let config = self.inner.engine.config();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let url = config.broker_url.as_deref().unwrap_or_default();
        let hub = &self.inner.hub;
        let node = hub.node().to_owned();
        let broker =
            broker::Broker::connect(config.broker, url, &config.broker_channel, node, tx).await?;
        let inbound = broker.map(|broker| {
            hub.set_broker(broker);
            rx
        });
        match self.inner.engine.lobby().await {
            Ok(lobby) => hub.set_lobby(lobby),
            Err(error) => return Err(format!("reading the lobby: {error}")),
        }
        hub::start(hub, &self.inner.engine, inbound);
        Ok(())
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
        let mut routes =
            Routes::new().routes(utoipa_axum::routes!(upgrade)).with_state(self.clone());
        handshake_headers(routes.openapi_mut());
        routes
    }

    /// `/socket.io/` of the gateway, to mount with `AppBuilder::directory`: Socket.IO v5
    /// clients, on the same connections as `/ws`.
    pub fn socketio_routes(&self) -> Routes {
        socketio::routes(self.clone())
    }

    fn sessions(&self) -> &socketio::Sessions {
        &self.inner.sessions
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

    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        self.inner.gate.authenticate(token)
    }
}

/// States the WebSocket handshake's headers (RFC 6455) as the operation's parameters: a
/// request the document calls valid is one that upgrades.
fn handshake_headers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};

    let Some(operation) = doc.paths.paths.get_mut("/").and_then(|item| item.get.as_mut()) else {
        return;
    };
    let header = |name: &str, description: &str, schema: ObjectBuilder| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(schema.schema_type(Type::String)))
            .build()
            .into()
    };
    let exactly = |value: &str| ObjectBuilder::new().enum_values(Some([value]));
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    parameters.extend([
        header("Connection", "`Upgrade`", exactly("Upgrade")),
        header("Upgrade", "`websocket`", exactly("websocket")),
        header("Sec-WebSocket-Version", "`13`", exactly("13")),
        header(
            "Sec-WebSocket-Key",
            "16 random bytes in base64",
            ObjectBuilder::new().pattern(Some("^[A-Za-z0-9+/]{22}==$")),
        ),
    ]);
}

/// Whether `key` is 16 bytes in base64: 22 characters of the alphabet, then `==`.
fn valid_key(key: &[u8]) -> bool {
    let alphabet = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/');
    key.len() == 24 && key[..22].iter().all(alphabet) && &key[22..] == b"=="
}

/// A random name for this node, telling its own relayed events apart.
fn node_id() -> String {
    use std::hash::BuildHasher as _;
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{seed:016x}")
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
        (status = 400, description = "`bad_request`: a malformed `Sec-WebSocket-Key`"),
        (status = 401, description = "`invalid_token`, `token_expired` or `session_revoked`: a token was given and is not valid"),
        (status = 426, description = "`upgrade_required`: not a WebSocket handshake"),
    ))]
async fn upgrade(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = match xcore_middleware::identity::bearer(&headers) {
        Ok(Some(token)) => Some(token.to_owned()),
        Ok(None) => query.ok().and_then(|Query(query)| query.token),
        Err(rejection) => return rejection.into_response(),
    };
    let caller = match token {
        Some(token) => match gateway.authenticate(&token) {
            Ok(user) => Some(socket::Caller { user, token }),
            Err(rejection) => return rejection.into_response(),
        },
        None => None,
    };
    let key = headers.get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes);
    if key.is_some_and(|key| !valid_key(key)) {
        let message = "`Sec-WebSocket-Key` must be 16 bytes in base64 (RFC 6455)";
        return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).into_response();
    }
    let Ok(upgrade) = upgrade else {
        let error = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint speaks WebSocket: send a WebSocket handshake",
        );
        return ([(header::UPGRADE, HeaderValue::from_static("websocket"))], error).into_response();
    };
    gateway
        .config()
        .tune(upgrade)
        .on_upgrade(move |socket| socket::serve(Box::new((socket, gateway, caller))))
}
