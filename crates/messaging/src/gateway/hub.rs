//! Which connections of this node receive which conversation's frames, fed by the
//! engine's [`live`](crate::Engine::live) events.
//!
//! A committed message is serialized once, into a frame every subscriber's queue shares.
//! A queue that is full marks its connection a slow consumer, closed with
//! [`close::SLOW`](super::close::SLOW): it never delays delivery to anyone else, and its
//! client resumes from the last sequence number it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, broadcast, mpsc};

pub(crate) use super::connection::{Closer, Connection, Queue};

use super::broker::{Broker, Envelope, Inbound, Relayed};
use super::protocol::{Ref, message_frame};
use super::socketio::Encodings;
use super::window::Windows;
use crate::model::{ConversationId, UserId};
use crate::{Engine, Event};

/// What a connection's writer is handed.
///
/// A busy connection's queue holds many of these: the rare variants are boxed, the shared
/// frames behind one pointer, to keep it at 24 bytes.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A reply or notice for this connection only.
    Text(String),
    /// A message of a subscribed conversation.
    Message { seq: i64, shared: Arc<Shared> },
    /// An edit or deletion of a subscribed conversation's message, or a typing notice.
    Change(Arc<Shared>),
    /// Start delivering a conversation.
    Subscribe(Box<Subscribe>),
    /// Stop delivering a conversation.
    Unsubscribe(Box<Unsubscribe>),
    /// Events may have been missed: send what the conversation has past the last delivered.
    CatchUp(ConversationId),
}

const _: () = assert!(size_of::<Outbound>() <= 24, "see `Outbound`");

/// A frame of one conversation, serialized once and shared by every recipient.
#[derive(Debug)]
pub(crate) struct Shared {
    pub conversation: ConversationId,
    /// The native frame.
    pub frame: Utf8Bytes,
    /// Its Socket.IO encodings, built by the first recipient needing each.
    pub socketio: Encodings,
}

impl Shared {
    pub fn new(conversation: ConversationId, frame: Utf8Bytes) -> Arc<Self> {
        Arc::new(Self { conversation, frame, socketio: Encodings::default() })
    }
}

/// Start delivering `conversation`, after sending every message after `after`.
#[derive(Debug)]
pub(crate) struct Subscribe {
    pub conversation: ConversationId,
    pub after: Option<i64>,
    pub reference: Option<Ref>,
}

/// Stop delivering `conversation`, telling the client why.
#[derive(Debug)]
pub(crate) struct Unsubscribe {
    pub conversation: ConversationId,
    pub reference: Option<Ref>,
    pub reason: &'static str,
}

impl Outbound {
    /// Whether this is a conversation's event, which may wait to share a write, rather
    /// than a reply, which goes out at once.
    pub fn is_delivery(&self) -> bool {
        matches!(self, Self::Message { .. } | Self::Change(_))
    }

    pub fn unsubscribe(
        conversation: ConversationId,
        reference: Option<Ref>,
        reason: &'static str,
    ) -> Self {
        Self::Unsubscribe(Box::new(Unsubscribe { conversation, reference, reason }))
    }
}

/// The subscriptions of this node's connections.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    conversations: RwLock<HashMap<ConversationId, Vec<Arc<Connection>>>>,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    per_user: Mutex<HashMap<UserId, usize>>,
    /// This node, in what it relays.
    node: String,
    /// The other nodes, when there are.
    broker: std::sync::OnceLock<Broker>,
    /// The latest messages of recently active conversations, for resumes.
    windows: Windows,
    /// Who is online on each other node, until its last snapshot expires.
    remote: Mutex<HashMap<String, RemoteNode>>,
    /// How long a node's snapshot holds.
    presence_ttl: Duration,
    /// Another node asked for this node's presence.
    presence_asked: Notify,
    /// The lobby, once known: told who comes online and goes offline.
    lobby: std::sync::OnceLock<ConversationId>,
    /// Names of the users recently seen, for events that carry them.
    usernames: Usernames,
}

/// Names of users, for events that carry them: those connected to this node, as they
/// connected, until their last device leaves; others, once read, for a few minutes at
/// most, so a renamed user is soon shown under the new name.
#[derive(Debug)]
struct Usernames {
    connected: Mutex<HashMap<UserId, Arc<str>>>,
    read: moka::sync::Cache<UserId, Arc<str>>,
}

impl Default for Usernames {
    fn default() -> Self {
        let read = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(300))
            .build();
        Self { connected: Mutex::default(), read }
    }
}

/// What another node said of its users.
#[derive(Debug)]
struct RemoteNode {
    users: HashMap<UserId, u32>,
    expires: Instant,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Node,
    User,
}

impl Hub {
    /// A hub for the node named `node`, keeping the latest `window` messages of at most
    /// `conversations` conversations for resumes (none when either is 0), and what other
    /// nodes say of their users for `presence_ttl`.
    pub fn new(node: String, window: usize, conversations: u64, presence_ttl: Duration) -> Self {
        Self { node, windows: Windows::new(window, conversations), presence_ttl, ..Self::default() }
    }

    /// The lobby's id, once the gateway started.
    pub fn lobby(&self) -> Option<ConversationId> {
        self.lobby.get().copied()
    }

    pub fn set_lobby(&self, lobby: ConversationId) {
        let _ = self.lobby.set(lobby);
    }

    pub fn username(&self, user: &UserId) -> Option<Arc<str>> {
        let connected = lock(&self.usernames.connected).get(user).cloned();
        connected.or_else(|| self.usernames.read.get(user))
    }

    /// Keeps the name of a user read from the store, for a few minutes.
    pub fn remember_username(&self, user: UserId, name: Arc<str>) {
        self.usernames.read.insert(user, name);
    }

    /// Tells the lobby's subscribers, here and on the other nodes, that `user` came
    /// online or went offline.
    fn announce(&self, user: &UserId, online: bool) {
        let Some(lobby) = self.lobby() else { return };
        let username = self.username(user);
        let kind = if online { "online" } else { "offline" };
        let notice = serde_json::json!({
            "type": kind,
            "user": user,
            "username": username.as_deref().unwrap_or(user.as_str()),
        })
        .to_string();
        if self.broker.get().is_some() {
            self.relay(Relayed::Typing { conversation: lobby, frame: notice.clone() });
        }
        let shared = Shared::new(lobby, Utf8Bytes::from(notice));
        self.deliver(lobby, None, || Outbound::Change(Arc::clone(&shared)));
    }

    /// Records what `node` says of its users. A snapshot replaces what was known and holds
    /// for `presence_ttl`; a change applies to it.
    fn remote_presence(&self, node: &str, users: Vec<(UserId, u32)>, snapshot: bool) {
        let mut remote = lock(&self.remote);
        let expires = Instant::now() + self.presence_ttl;
        let entry = remote
            .entry(node.to_owned())
            .or_insert_with(|| RemoteNode { users: HashMap::new(), expires });
        if snapshot {
            entry.users.clear();
            entry.expires = expires;
        }
        for (user, devices) in users {
            if snapshot || devices > 0 {
                entry.users.insert(user, devices);
            } else {
                entry.users.remove(&user);
            }
        }
    }

    /// Tells the other nodes who is online here: everyone now, then every third of the
    /// presence lifetime, and whenever a node that just started asks; and drops what
    /// nodes that stopped telling had said.
    pub async fn run_presence(self: Arc<Self>, engine: Engine) {
        if self.broker.get().is_none() {
            return;
        }
        self.relay(Relayed::PresenceRequest);
        let every = (self.presence_ttl / 3).max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.presence_asked.notified() => {}
            }
            let now = Instant::now();
            lock(&self.remote).retain(|_, node| node.expires > now);
            self.relay(Relayed::Presence { users: engine.local_presence(), snapshot: true });
        }
    }

    /// The frames of `conversation` after `after` (up to `until`) when this node's window
    /// holds them all; `None` sends the caller to the store.
    pub fn recent(
        &self,
        conversation: ConversationId,
        after: i64,
        until: Option<i64>,
    ) -> Option<Vec<(i64, Utf8Bytes)>> {
        self.windows.after(conversation, after, until)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Relays this node's events to the other nodes through `broker` from now on.
    pub fn set_broker(&self, broker: Broker) {
        let _ = self.broker.set(broker);
    }

    fn relay(&self, relayed: Relayed) {
        if let Some(broker) = self.broker.get() {
            broker.publish(&Envelope { node: self.node.clone(), relayed });
        }
    }

    /// Hands a typing notice to `conversation`'s other subscribers, here and elsewhere.
    pub fn typing(&self, conversation: ConversationId, except: u64, frame: Utf8Bytes) {
        if self.broker.get().is_some() {
            self.relay(Relayed::Typing { conversation, frame: frame.as_str().to_owned() });
        }
        let shared = Shared::new(conversation, frame);
        self.deliver(conversation, Some(except), || Outbound::Change(Arc::clone(&shared)));
    }

    /// Adds a connection, unless the node or its user is at their limit.
    pub fn admit(
        &self,
        connection: Arc<Connection>,
        max_node: usize,
        max_user: usize,
    ) -> Result<(), Full> {
        let mut connections = lock(&self.connections);
        if connections.len() >= max_node {
            return Err(Full::Node);
        }
        let mut per_user = lock(&self.per_user);
        let count = per_user.entry(connection.user.clone()).or_default();
        if *count >= max_user {
            return Err(Full::User);
        }
        *count += 1;
        connections.insert(connection.id, connection);
        Ok(())
    }

    /// Removes a connection and its subscriptions.
    pub fn remove(
        &self,
        connection: &Connection,
        subscribed: impl IntoIterator<Item = ConversationId>,
    ) {
        for conversation in subscribed {
            self.unsubscribe(conversation, connection.id);
        }
        lock(&self.connections).remove(&connection.id);
        let mut per_user = lock(&self.per_user);
        if let Some(count) = per_user.get_mut(&connection.user) {
            *count -= 1;
            if *count == 0 {
                per_user.remove(&connection.user);
            }
        }
    }

    pub fn subscribe(&self, conversation: ConversationId, connection: &Arc<Connection>) {
        let mut conversations = write(&self.conversations);
        let subscribers = conversations.entry(conversation).or_default();
        if !subscribers.iter().any(|other| other.id == connection.id) {
            subscribers.push(Arc::clone(connection));
        }
    }

    pub fn unsubscribe(&self, conversation: ConversationId, connection: u64) {
        let mut conversations = write(&self.conversations);
        if let Some(subscribers) = conversations.get_mut(&conversation) {
            subscribers.retain(|other| other.id != connection);
            if subscribers.is_empty() {
                conversations.remove(&conversation);
            }
        }
    }

    /// Hands `outbound(subscriber)` to every subscriber of `conversation` but `except`.
    pub fn deliver(
        &self,
        conversation: ConversationId,
        except: Option<u64>,
        outbound: impl Fn() -> Outbound,
    ) {
        let conversations = read(&self.conversations);
        let Some(subscribers) = conversations.get(&conversation) else { return };
        for subscriber in subscribers.iter().filter(|s| Some(s.id) != except) {
            subscriber.push(outbound());
        }
    }

    /// The open connections.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        lock(&self.connections).values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.connections).len()
    }

    /// Delivers the engine's events until the engine is gone.
    pub async fn run(self: Arc<Self>, mut events: broadcast::Receiver<Arc<Event>>) {
        loop {
            match events.recv().await {
                Ok(event) => self.on_event(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        plugin = "messaging",
                        missed,
                        "the gateway fell behind the engine; subscribers catch up from the store"
                    );
                    self.catch_up_all();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Delivers what other nodes relay until the broker is gone.
    pub async fn run_inbound(self: Arc<Self>, mut inbound: mpsc::UnboundedReceiver<Inbound>) {
        while let Some(inbound) = inbound.recv().await {
            match inbound {
                Inbound::Relayed { node, relayed } => self.on_relayed(&node, relayed),
                Inbound::Resynchronize => self.catch_up_all(),
            }
        }
    }

    /// Makes every subscribed conversation catch up from the store.
    fn catch_up_all(&self) {
        let conversations: Vec<_> = read(&self.conversations).keys().copied().collect();
        for conversation in conversations {
            self.deliver(conversation, None, || Outbound::CatchUp(conversation));
        }
    }

    /// An event of this node's engine: delivered here, relayed to the others.
    fn on_event(&self, event: &Event) {
        let relaying = self.broker.get().is_some();
        match event {
            Event::Message { message, .. } => {
                let (conversation, seq) = (message.conversation_id, message.seq);
                let subscribed = read(&self.conversations).contains_key(&conversation);
                if !subscribed && !relaying && !self.windows.enabled() {
                    return;
                }
                let frame = message_frame("message", message);
                if relaying {
                    self.relay(Relayed::Message { conversation, seq, frame: frame.clone() });
                }
                self.deliver_message(conversation, seq, Utf8Bytes::from(frame));
            }
            Event::MessageEdited { message, .. } | Event::MessageDeleted { message, .. } => {
                let kind =
                    if matches!(event, Event::MessageEdited { .. }) { "edit" } else { "delete" };
                let conversation = message.conversation_id;
                self.windows.forget(conversation);
                let subscribed = read(&self.conversations).contains_key(&conversation);
                if !subscribed && !relaying {
                    return;
                }
                let frame = message_frame(kind, message);
                if relaying {
                    self.relay(Relayed::Change { conversation, frame: frame.clone() });
                }
                self.deliver_change(conversation, Utf8Bytes::from(frame));
            }
            Event::Connect { user, .. } | Event::Disconnect { user, .. } => {
                if let Event::Connect { user, username, .. } = event {
                    let name = Arc::from(username.as_str());
                    lock(&self.usernames.connected).insert(user.clone(), name);
                }
                // Online or offline for the cluster, not only for this node.
                let elsewhere = crate::RemotePresence::devices(self, user).unwrap_or(0) > 0;
                match event {
                    Event::Connect { came_online: true, .. } if !elsewhere => {
                        self.announce(user, true);
                    }
                    Event::Disconnect { went_offline: true, .. } if !elsewhere => {
                        self.announce(user, false);
                    }
                    _ => {}
                }
                if let Event::Disconnect { went_offline: true, .. } = event {
                    lock(&self.usernames.connected).remove(user);
                }
                if relaying {
                    let devices = engine_devices(event);
                    self.relay(Relayed::Presence {
                        users: vec![(user.clone(), devices)],
                        snapshot: false,
                    });
                }
            }
            Event::MemberRemoved { group, user, .. } => {
                self.relay(Relayed::MemberRemoved { conversation: *group, user: user.clone() });
                self.drop_where(*group, Some(user), "removed");
            }
            Event::GroupDeleted { group, .. } => {
                self.relay(Relayed::GroupDeleted { conversation: *group });
                self.drop_where(*group, None, "deleted");
            }
            _ => {}
        }
    }

    /// An event another node relayed: delivered here only.
    fn on_relayed(&self, node: &str, relayed: Relayed) {
        match relayed {
            Relayed::Presence { users, snapshot } => self.remote_presence(node, users, snapshot),
            Relayed::PresenceRequest => self.presence_asked.notify_one(),
            Relayed::Message { conversation, seq, frame } => {
                self.deliver_message(conversation, seq, Utf8Bytes::from(frame));
            }
            Relayed::Change { conversation, frame } => {
                self.deliver_change(conversation, Utf8Bytes::from(frame));
            }
            Relayed::Typing { conversation, frame } => {
                let shared = Shared::new(conversation, Utf8Bytes::from(frame));
                self.deliver(conversation, None, || Outbound::Change(Arc::clone(&shared)));
            }
            Relayed::MemberRemoved { conversation, user } => {
                self.drop_where(conversation, Some(&user), "removed");
            }
            Relayed::GroupDeleted { conversation } => {
                self.drop_where(conversation, None, "deleted")
            }
        }
    }

    fn deliver_message(&self, conversation: ConversationId, seq: i64, frame: Utf8Bytes) {
        self.windows.record(conversation, seq, &frame);
        let shared = Shared::new(conversation, frame);
        self.deliver(conversation, None, || Outbound::Message { seq, shared: Arc::clone(&shared) });
    }

    /// Delivers an edit or a deletion. The conversation's window holds the message as it
    /// was: it is dropped, and resumes read the store until it fills again.
    fn deliver_change(&self, conversation: ConversationId, frame: Utf8Bytes) {
        self.windows.forget(conversation);
        let shared = Shared::new(conversation, frame);
        self.deliver(conversation, None, || Outbound::Change(Arc::clone(&shared)));
    }

    /// Unsubscribes `user`'s connections (everyone's without a user) from `conversation`,
    /// telling them `reason`.
    fn drop_where(
        &self,
        conversation: ConversationId,
        user: Option<&UserId>,
        reason: &'static str,
    ) {
        let dropped: Vec<Arc<Connection>> = {
            let mut conversations = write(&self.conversations);
            let Some(subscribers) = conversations.get_mut(&conversation) else { return };
            let (dropped, kept) = std::mem::take(subscribers)
                .into_iter()
                .partition(|s| user.is_none_or(|user| s.user == *user));
            *subscribers = kept;
            if subscribers.is_empty() {
                conversations.remove(&conversation);
            }
            dropped
        };
        for connection in dropped {
            connection.push(Outbound::unsubscribe(conversation, None, reason));
        }
    }
}

/// The devices a connect or disconnect event leaves its user with on this node.
fn engine_devices(event: &Event) -> u32 {
    match event {
        Event::Connect { devices, .. } | Event::Disconnect { devices, .. } => *devices,
        _ => 0,
    }
}

impl crate::RemotePresence for Hub {
    fn devices(&self, user: &UserId) -> Option<u32> {
        let now = Instant::now();
        let remote = lock(&self.remote);
        let mut found = None;
        for node in remote.values().filter(|node| node.expires > now) {
            if let Some(devices) = node.users.get(user) {
                found = Some(found.unwrap_or(0) + devices);
            }
        }
        found
    }

    fn online(&self) -> Vec<UserId> {
        let now = Instant::now();
        let remote = lock(&self.remote);
        remote
            .values()
            .filter(|node| node.expires > now)
            .flat_map(|node| node.users.keys().cloned())
            .collect()
    }
}

/// Starts delivering `engine`'s events, and what other nodes relay through `inbound`, to
/// `hub`'s connections.
pub(crate) fn start(
    hub: &Arc<Hub>,
    engine: &Engine,
    inbound: Option<mpsc::UnboundedReceiver<Inbound>>,
) {
    tokio::spawn(Arc::clone(hub).run(engine.live()));
    if let Some(inbound) = inbound {
        tokio::spawn(Arc::clone(hub).run_inbound(inbound));
        engine.set_remote_presence(Arc::clone(hub) as Arc<dyn crate::RemotePresence>);
        tokio::spawn(Arc::clone(hub).run_presence(engine.clone()));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::window::tests::{frame, seqs};

    #[test]
    fn windows_serve_resumes_and_edits_drop_them() {
        let hub = Hub::new("n".into(), 3, 10, Duration::from_secs(60));
        for seq in 1..=5 {
            hub.deliver_message(7, seq, frame(seq));
        }
        assert_eq!(seqs(hub.recent(7, 2, None)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(hub.recent(8, 0, None)), None, "another conversation");
        hub.deliver_change(7, Utf8Bytes::from("edit"));
        assert_eq!(seqs(hub.recent(7, 2, None)), None, "an edit sends resumes to the store");
        let none = Hub::new("n".into(), 0, 10, Duration::from_secs(60));
        none.deliver_message(7, 1, frame(1));
        assert_eq!(seqs(none.recent(7, 0, None)), None);
    }
}
