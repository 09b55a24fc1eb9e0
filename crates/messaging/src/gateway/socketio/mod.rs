//! Socket.IO v5 over Engine.IO v4 at `/socket.io/`: the original chat engine's clients,
//! and every Socket.IO client library, on the native gateway's delivery path.
//!
//! A Socket.IO connection is one of the gateway's connections in another dialect: the
//! same hub, queue, writer, permissions, limits and fan-out; only the framing differs.
//! Two namespaces:
//!
//! - `/`, the original's events: the socket is in the lobby; the client emits
//!   `send_message {id, content}`, and receives `new_message {user_id, username, content,
//!   timestamp}`, `user_connected`, `user_disconnected` and `error`;
//! - `/chat`, the native protocol: an event per frame type, named by its `type`, with the
//!   native frame as payload; a client's acknowledgement id stands for the native `ref`,
//!   and the reply comes back as the acknowledgement.
//!
//! Connection-state recovery: a recovering socket's events carry an offset (the last
//! sequence number delivered of each subscribed conversation), which Socket.IO clients keep
//! and send back with the session id (`pid`) when they reconnect, to this node or another:
//! the subscriptions resume from there, with no gap and no duplicate.
//!
//! Transports: WebSocket (directly, or upgraded from long-polling) and long-polling.
//! Long-polling keeps its session on the node that opened it: behind a load balancer,
//! polling clients need sticky sessions, as with any Socket.IO server.

mod http;
mod packet;
mod polling;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::Utf8Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

pub(crate) use http::routes;
pub(crate) use polling::Polling;

use self::packet::{EnginePacket, Kind, Packet};
use super::close;
use super::hub::{Hub, Shared};
use super::protocol::{ClientFrame, Ref, ServerFrame};
use super::socket::{Reader, Writer};
use crate::model::{ConversationId, Message, UserId};

/// The most subscriptions a recovering client's offset may restore.
const MAX_OFFSET_CONVERSATIONS: usize = 1_024;

/// Packets POSTed by a long-polling client waiting for its connection's reader.
const INCOMING: usize = 64;

/// A Socket.IO namespace xcore serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    /// `/`: the original chat engine's events, in the lobby.
    Root,
    /// `/chat`: the native protocol's frames as events.
    Chat,
}

impl Namespace {
    fn parse(path: &str) -> Option<Self> {
        match path {
            "/" => Some(Self::Root),
            "/chat" => Some(Self::Chat),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Root => "/",
            Self::Chat => "/chat",
        }
    }
}

/// How a Socket.IO connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    pub namespace: Namespace,
    /// Whether events carry offsets for connection-state recovery.
    pub recover: bool,
}

impl Mode {
    /// Which of a shared frame's cached encodings this mode uses.
    fn slot(self) -> usize {
        usize::from(self.namespace == Namespace::Chat) * 2 + usize::from(self.recover)
    }
}

/// The framing of a connection: native JSON frames, or Socket.IO packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Native,
    SocketIo(Mode),
}

impl Dialect {
    /// A reply or notice for one connection: the native frame, or for Socket.IO the
    /// acknowledgement of the event whose id is its `ref`, else an event named by its
    /// `type` (`error` for errors).
    pub fn encode(self, frame: &ServerFrame<'_>) -> String {
        let text = frame.to_text();
        match self {
            Self::Native => text,
            Self::SocketIo(mode) => match ack_id(frame) {
                Some(id) => packet::ack(mode.namespace.path(), id, &text),
                None => packet::event(mode.namespace.path(), kind(&text), &text, None),
            },
        }
    }
}

/// The Socket.IO encodings of a shared frame, by [`Mode::slot`], built by the first
/// recipient that needs one; `None` when that namespace has no event for it.
pub(crate) type Encodings = [OnceLock<Option<Utf8Bytes>>; 4];

/// The acknowledgement id a reply answers: its `ref`, when a Socket.IO id.
fn ack_id(frame: &ServerFrame<'_>) -> Option<u64> {
    frame.reference().and_then(Ref::as_u64)
}

/// A native frame's `type`: every frame starts with it.
fn kind(text: &str) -> &str {
    text.strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.split_once('"'))
        .map_or("message", |(kind, _)| kind)
}

/// The offset of a recovering connection: `conversation:seq` for each subscription.
fn offset(delivered: &HashMap<ConversationId, i64>) -> String {
    let mut positions: Vec<_> = delivered.iter().collect();
    positions.sort_unstable();
    let mut out = String::with_capacity(positions.len() * 12);
    for (index, (conversation, seq)) in positions.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&format!("{conversation}:{seq}"));
    }
    out
}

/// Parses an offset back, refusing anything [`offset`] does not write.
fn parse_offset(text: &str) -> Option<Vec<(ConversationId, i64)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let positions = text
        .split(',')
        .map(|position| {
            let (conversation, seq) = position.split_once(':')?;
            let (conversation, seq) = (conversation.parse().ok()?, seq.parse().ok()?);
            (seq >= 0).then_some((conversation, seq))
        })
        .collect::<Option<Vec<_>>>()?;
    (positions.len() <= MAX_OFFSET_CONVERSATIONS).then_some(positions)
}

/// A message event for a connection, `frame` being its native frame and the connection's
/// positions already counting it; `Ok(None)` when its namespace has no event for it,
/// `Err(user)` when the event needs the name of a user to [`learn`](learn_username)
/// first. Not async: every connection's writer waits with what it calls inline.
pub(crate) fn message(
    writer: &Writer,
    mode: Mode,
    conversation: ConversationId,
    frame: &Utf8Bytes,
    shared: Option<&Shared>,
) -> Result<Option<Utf8Bytes>, UserId> {
    let delivered = writer.delivered();
    // With one subscription the offset is this message's position: the same for every
    // recipient, so the encoding is shared too.
    let slot = shared
        .filter(|_| !mode.recover || delivered.len() == 1)
        .map(|shared| &shared.socketio[mode.slot()]);
    if let Some(cached) = slot.and_then(OnceLock::get) {
        return Ok(cached.clone());
    }
    let offset = mode.recover.then(|| offset(delivered));
    let encoded = match mode.namespace {
        Namespace::Chat => Some(packet::event("/chat", "message", frame, offset.as_deref()).into()),
        Namespace::Root if writer.hub().lobby() == Some(conversation) => {
            let Some(message) = parse_message(frame) else { return Ok(None) };
            let sender = &message.sender_id;
            let username = writer.hub().username(sender).ok_or_else(|| sender.clone())?;
            let payload = serde_json::json!({
                "user_id": message.sender_id,
                "username": username,
                "content": message.body,
                "timestamp": message.created_at,
            });
            Some(packet::event("/", "new_message", &payload.to_string(), offset.as_deref()).into())
        }
        Namespace::Root => None,
    };
    if let Some(slot) = slot {
        let _ = slot.set(encoded.clone());
    }
    Ok(encoded)
}

/// An edit, deletion, typing or presence notice for a connection; as [`message`].
pub(crate) fn change(
    writer: &Writer,
    mode: Mode,
    shared: &Shared,
) -> Result<Option<Utf8Bytes>, UserId> {
    // Notices carry no offset: the slot without one serves both.
    let slot = &shared.socketio[Mode { recover: false, ..mode }.slot()];
    if let Some(cached) = slot.get() {
        return Ok(cached.clone());
    }
    let frame = shared.frame.as_str();
    let encoded = match mode.namespace {
        Namespace::Chat => Some(packet::event("/chat", kind(frame), frame, None).into()),
        Namespace::Root => {
            let event = match kind(frame) {
                "online" => "user_connected",
                "offline" => "user_disconnected",
                _ => return Ok(slot.get_or_init(|| None).clone()),
            };
            let notice: Value = serde_json::from_str(frame).unwrap_or_default();
            let Some(user) = notice["user"].as_str() else { return Ok(None) };
            let user = UserId::from(user.to_owned());
            let username = writer.hub().username(&user).ok_or_else(|| user.clone())?;
            let payload = serde_json::json!({ "user_id": user, "username": username });
            Some(packet::event("/", event, &payload.to_string(), None).into())
        }
    };
    Ok(slot.get_or_init(|| encoded).clone())
}

/// A subscription notice: the acknowledgement when asked for one; the event when not, in
/// `/chat`; and for a connection that recovers, always the event, with the offset.
pub(crate) fn notice(
    mode: Mode,
    frame: &ServerFrame<'_>,
    delivered: &HashMap<ConversationId, i64>,
) -> Vec<String> {
    let text = frame.to_text();
    let namespace = mode.namespace.path();
    let mut packets = Vec::with_capacity(2);
    let ack = ack_id(frame);
    if let Some(id) = ack {
        packets.push(packet::ack(namespace, id, &text));
    }
    if (ack.is_none() && mode.namespace == Namespace::Chat) || mode.recover {
        let offset = mode.recover.then(|| offset(delivered));
        packets.push(packet::event(namespace, kind(&text), &text, offset.as_deref()));
    }
    packets
}

/// What a connection closing with `code` sends before its transport closes. Socket.IO has
/// no close codes: an `error` event tells the code; then a client reconnects by itself
/// (and recovers), but for `unauthorized`, which ends the socket for good.
pub(crate) fn closing(mode: Mode, code: u16, reason: &str) -> Vec<String> {
    let name = match code {
        close::NORMAL | close::GOING_AWAY => return Vec::new(),
        close::UNAVAILABLE => "unavailable",
        close::IDLE => "idle",
        close::UNAUTHORIZED => "unauthorized",
        close::TOKEN_EXPIRED => "token_expired",
        close::POLICY => "policy_violation",
        close::SLOW => "slow_consumer",
        close::TOO_MANY => "too_many_connections",
        _ => "closed",
    };
    let namespace = mode.namespace.path();
    let payload =
        serde_json::json!({ "type": "error", "code": name, "close": code, "message": reason });
    let mut packets = vec![packet::event(namespace, "error", &payload.to_string(), None)];
    if code == close::UNAUTHORIZED {
        packets.push(packet::disconnect(namespace));
    }
    packets
}

/// The message in a native `message` frame.
fn parse_message(frame: &str) -> Option<Message> {
    #[derive(Deserialize)]
    struct Frame {
        message: Message,
    }
    serde_json::from_str::<Frame>(frame).ok().map(|frame| frame.message)
}

/// Puts `user`'s name in the node's cache, for the original's events: from the store, or
/// the id itself for a user the store no longer has.
pub(crate) async fn learn_username(hub: &Hub, engine: &crate::Engine, user: &UserId) {
    let name: Arc<str> = match engine.user(user).await {
        Ok(found) => found.username.into(),
        Err(_) => user.as_str().into(),
    };
    hub.remember_username(user.clone(), name);
}

/// Answers a packet of an open Socket.IO connection; a request for the engine comes back
/// as the native frame it stands for.
pub(crate) fn on_packet(reader: &mut Reader, mode: Mode, text: &str) -> Option<ClientFrame> {
    let data = match EnginePacket::decode(text) {
        Some(EnginePacket::Message(data)) => data,
        Some(EnginePacket::Close) => {
            reader.close(close::NORMAL);
            return None;
        }
        Some(EnginePacket::Ping(data)) => {
            reader.push_text(format!("3{data}"));
            return None;
        }
        Some(EnginePacket::Pong(_) | EnginePacket::Noop) => return None,
        Some(EnginePacket::Upgrade) | None => {
            reader.invalid(None, "not an Engine.IO packet this connection expects");
            return None;
        }
    };
    let packet = match Packet::decode(data) {
        Ok(packet) => packet,
        Err(reason) => {
            reader.invalid(None, reason);
            return None;
        }
    };
    if packet.namespace != mode.namespace.path() {
        if packet.kind == Kind::Connect {
            let message = format!(
                "this connection is in namespace `{}`: open another connection for `{}` (one namespace per connection)",
                mode.namespace.path(),
                packet.namespace
            );
            reader.push_text(packet::connect_error(packet.namespace, "namespace_taken", &message));
        } else {
            reader.invalid(None, "a packet for a namespace this connection is not in");
        }
        return None;
    }
    match packet.kind {
        Kind::Event => {}
        Kind::Disconnect => {
            reader.close(close::NORMAL);
            return None;
        }
        // The server asks for no acknowledgement.
        Kind::Ack => return None,
        Kind::BinaryEvent | Kind::BinaryAck => {
            reader.invalid(None, "binary attachments are not supported: send JSON");
            return None;
        }
        Kind::Connect | Kind::ConnectError => {
            reader.invalid(None, "already connected");
            return None;
        }
    }
    if !reader.spend() {
        reader.rate_limited();
        return None;
    }
    let reference = packet.ack.map(Ref::from);
    match event_frame(mode, packet, reader.user(), reader.lobby()) {
        Ok(frame) => Some(frame),
        Err(message) => {
            reader.invalid(reference.as_ref(), &message);
            None
        }
    }
}

/// The native frame an event stands for.
fn event_frame(
    mode: Mode,
    packet: Packet<'_>,
    user: &UserId,
    lobby: Option<ConversationId>,
) -> Result<ClientFrame, String> {
    let mut args: Vec<Value> = packet
        .data
        .map(serde_json::from_str)
        .transpose()
        .map_err(|error| format!("not a JSON array: {error}"))?
        .unwrap_or_default();
    let mut args = args.drain(..);
    let Some(Value::String(name)) = args.next() else {
        return Err("an event needs a name: `[\"name\", payload]`".to_owned());
    };
    let payload = match args.next() {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(payload)) => payload,
        Some(_) => return Err(format!("the payload of `{name}` must be an object")),
    };
    let reference = packet.ack.map(Ref::from);
    match mode.namespace {
        Namespace::Chat => {
            let mut frame = payload;
            frame.insert("type".to_owned(), Value::String(name));
            match reference {
                Some(reference) => frame.insert("ref".to_owned(), reference),
                None => frame.remove("ref"),
            };
            serde_json::from_value(Value::Object(frame))
                .map_err(|error| format!("not a valid event: {error}"))
        }
        Namespace::Root if name == "send_message" => {
            let own = match payload.get("id") {
                Some(Value::String(id)) => id == user.as_str(),
                Some(Value::Number(id)) => id.to_string() == user.as_str(),
                _ => false,
            };
            if !own {
                return Err("`id` must be the connected user's id".to_owned());
            }
            let Some(Value::String(content)) = payload.get("content") else {
                return Err("`content` must be a string".to_owned());
            };
            let conversation = lobby.ok_or("the lobby is not known yet: try again")?;
            Ok(ClientFrame::Send {
                reference,
                conversation,
                body: content.clone(),
                attachment: None,
            })
        }
        // A fresh token before the current one expires, as in `/chat`.
        Namespace::Root if name == "auth" => match payload.get("token") {
            Some(Value::String(token)) => Ok(ClientFrame::Auth { reference, token: token.clone() }),
            _ => Err("`token` must be a string".to_owned()),
        },
        Namespace::Root => Err(format!(
            "unknown event `{name}`: namespace `/` has `send_message` and `auth`; `/chat` has \
             the rest"
        )),
    }
}

/// `[messaging.gateway]`'s Socket.IO state: the long-polling sessions of this node.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    polling: Mutex<HashMap<String, Arc<Polling>>>,
}

impl Sessions {
    fn get(&self, sid: &str) -> Option<Arc<Polling>> {
        lock(&self.polling).get(sid).cloned()
    }

    fn insert(&self, sid: String, polling: Arc<Polling>) {
        lock(&self.polling).insert(sid, polling);
    }

    fn remove(&self, sid: &str) {
        lock(&self.polling).remove(sid);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A random id for a session or a socket.
fn random_id() -> String {
    use std::hash::BuildHasher as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{:016x}", state.hash_one(count), state.hash_one(!count))
}
