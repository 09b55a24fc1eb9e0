//! One WebSocket connection: authentication, then a reader answering the client's
//! frames in order and a writer sending replies and deliveries from a bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use xcore_middleware::CurrentUser;

use super::hub::{Closer, Connection, Full, Outbound};
use super::protocol::{
    ClientFrame, MAX_PRESENCE_USERS, Ref, ServerFrame, UserPresence, message_frame, valid_ref,
};
use super::{Gateway, close};
use crate::model::{Actor, ConversationId, Draft, Page};
use crate::{Error, MODERATE};

/// Invalid frames a connection may send before it is closed with
/// [`close::POLICY`].
const MAX_INVALID: u32 = 20;

/// How long a closing connection's writer has to send what is queued and the close frame.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// Who a socket speaks for, and the token that says so.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user: CurrentUser,
    pub token: String,
}

/// Serves an upgraded socket until it closes.
pub(crate) async fn serve(socket: WebSocket, gateway: Gateway, caller: Option<Caller>) {
    let (mut sink, mut stream) = socket.split();
    let config = gateway.config().clone();
    let Caller { user, token } = match caller {
        Some(caller) => caller,
        None => match first_auth(&mut stream, &gateway, config.auth_timeout()).await {
            Ok(caller) => caller,
            Err((code, reason)) => {
                let _ = send_close(&mut sink, code, reason).await;
                return;
            }
        },
    };
    let actor = Actor {
        user: crate::UserId::from(user.user_id),
        moderator: gateway.gate().allows(&user, MODERATE),
    };
    let (tx, rx) = mpsc::channel(config.queue);
    let connection = Arc::new(Connection {
        id: gateway.next_id(),
        user: actor.user.clone(),
        tx,
        closer: Closer::default(),
    });
    if let Err(full) = gateway.hub().admit(
        Arc::clone(&connection),
        config.max_connections,
        config.max_connections_per_user,
    ) {
        let reason = match full {
            Full::Node => "this node has its maximum of connections",
            Full::User => "this user has the maximum of connections",
        };
        let _ = send_close(&mut sink, close::TOO_MANY, reason).await;
        return;
    }
    let engine = gateway.engine().clone();
    let username = format!("user{}", user.user_id);
    if let Err(error) =
        engine.connect_user(actor.user.clone(), &username, serde_json::json!({})).await
    {
        tracing::warn!(plugin = "messaging", %error, "a socket could not connect its user");
        gateway.hub().remove(&connection, []);
        let _ =
            send_close(&mut sink, close::UNAVAILABLE, "messaging is unavailable; try again").await;
        return;
    }
    let ready = ServerFrame::Ready { user: actor.user.as_str() }.to_text();
    connection.push(Outbound::Text(ready.into()));
    let writer = Writer {
        sink,
        gateway: gateway.clone(),
        engine: engine.clone(),
        actor: actor.clone(),
        delivered: HashMap::new(),
        max_page: engine.config().max_page,
    };
    let writing = tokio::spawn(writer.run(rx, Arc::clone(&connection), config.ping_interval()));
    let mut reader = Reader {
        gateway: gateway.clone(),
        connection: Arc::clone(&connection),
        actor: actor.clone(),
        subscribed: std::collections::HashSet::new(),
        token,
        grace_until: None,
        invalid: 0,
        tokens: config.frames_burst(),
        refilled: Instant::now(),
    };
    reader.run(&mut stream, config.idle_timeout()).await;
    gateway.hub().remove(&connection, reader.subscribed.iter().copied());
    if connection.closer.code().is_none() {
        connection.closer.close(close::NORMAL);
    }
    // A writer stuck sending to a peer that does not read cannot send a close frame
    // either: the socket is dropped.
    let mut writing = writing;
    if timeout(WRITER_GRACE, &mut writing).await.is_err() {
        writing.abort();
    }
    if let Err(error) = engine.disconnect_user(actor.user).await {
        tracing::debug!(plugin = "messaging", %error, "disconnecting a socket's user");
    }
}

/// Waits for the first frame, which must be `auth` with a valid token.
async fn first_auth(
    stream: &mut SplitStream<WebSocket>,
    gateway: &Gateway,
    within: Duration,
) -> Result<Caller, (u16, &'static str)> {
    let refused = (close::UNAUTHORIZED, "authenticate first: an `auth` frame with a valid token");
    let frame = match timeout(within, stream.next()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) => text,
        Ok(_) => return Err(refused),
        Err(_) => return Err((close::UNAUTHORIZED, "no `auth` frame in time")),
    };
    match serde_json::from_str::<ClientFrame>(&frame) {
        Ok(ClientFrame::Auth { token, .. }) => match gateway.authenticate(&token) {
            Ok(user) => Ok(Caller { user, token }),
            Err(_) => Err(refused),
        },
        _ => Err(refused),
    }
}

async fn send_close(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    code: u16,
    reason: &str,
) -> Result<(), axum::Error> {
    let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
    sink.send(WsMessage::Close(Some(frame))).await
}

/// The writing half: sends what is queued, in order, with no gap in a subscribed
/// conversation's sequence numbers.
struct Writer {
    sink: SplitSink<WebSocket, WsMessage>,
    gateway: Gateway,
    engine: crate::Engine,
    actor: Actor,
    /// The last sequence number sent per subscribed conversation.
    delivered: HashMap<ConversationId, i64>,
    max_page: u32,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Outbound>,
        connection: Arc<Connection>,
        ping: Duration,
    ) {
        let mut pings = tokio::time::interval_at(Instant::now() + ping, ping);
        let code = loop {
            let sent = tokio::select! {
                biased;
                code = connection.closer.wait() => break code,
                outbound = rx.recv() => match outbound {
                    Some(outbound) => self.handle(outbound).await,
                    None => break close::NORMAL,
                },
                _ = pings.tick() => self.sink.send(WsMessage::Ping(Default::default())).await.map_err(|_| ()),
            };
            if sent.is_err() {
                // The peer is gone: nothing more can be sent.
                connection.closer.close(close::NORMAL);
                return;
            }
        };
        let _ = send_close(&mut self.sink, code, close::reason(code)).await;
    }

    async fn handle(&mut self, outbound: Outbound) -> Result<(), ()> {
        match outbound {
            Outbound::Text(text) => self.send(text).await,
            Outbound::Message { conversation, seq, frame } => {
                let Some(&last) = self.delivered.get(&conversation) else { return Ok(()) };
                if seq <= last {
                    return Ok(());
                }
                if seq > last + 1 {
                    self.fill(conversation, Some(seq - 1)).await?;
                }
                self.delivered.insert(conversation, seq);
                self.send(frame).await
            }
            Outbound::Change { conversation, frame } => {
                if self.delivered.contains_key(&conversation) {
                    self.send(frame).await
                } else {
                    Ok(())
                }
            }
            Outbound::Subscribe { conversation, after, reference } => {
                self.subscribe(conversation, after, reference.as_ref()).await
            }
            Outbound::Unsubscribe { conversation, reference, reason } => {
                self.delivered.remove(&conversation);
                let frame = ServerFrame::Unsubscribed {
                    reference: reference.as_ref(),
                    conversation,
                    reason,
                };
                self.send(frame.to_text().into()).await
            }
            Outbound::CatchUp { conversation } => {
                if self.delivered.contains_key(&conversation) {
                    // Events were missed, maybe by the window too: the store is the truth.
                    self.fill_from_store(conversation, None).await?;
                }
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        conversation: ConversationId,
        after: Option<i64>,
        reference: Option<&Ref>,
    ) -> Result<(), ()> {
        let last_seq = match last_seq(&self.engine, &self.actor, conversation).await {
            Ok(last_seq) => last_seq,
            Err(error) => {
                self.delivered.remove(&conversation);
                return self.send(error_frame(reference, &error).into()).await;
            }
        };
        match after {
            Some(after) if after < 0 || after > last_seq => {
                let error = Error::invalid(
                    "after",
                    format!("must be 0 to the conversation's last sequence number ({last_seq})"),
                );
                self.send(error_frame(reference, &error).into()).await
            }
            Some(after) => {
                self.delivered.insert(conversation, after);
                self.fill(conversation, None).await?;
                let last_seq = self.delivered.get(&conversation).copied().unwrap_or(after);
                self.send(
                    ServerFrame::Subscribed { reference, conversation, last_seq }.to_text().into(),
                )
                .await
            }
            None => {
                self.delivered.insert(conversation, last_seq);
                self.send(
                    ServerFrame::Subscribed { reference, conversation, last_seq }.to_text().into(),
                )
                .await
            }
        }
    }

    /// Sends the messages of `conversation` past the last delivered, up to `until` (or
    /// every one there is): from the node's window of recent messages when it holds them,
    /// from the store otherwise. Messages newer than the window are on their way to this
    /// connection's queue, behind this call.
    async fn fill(&mut self, conversation: ConversationId, until: Option<i64>) -> Result<(), ()> {
        let Some(&last) = self.delivered.get(&conversation) else { return Ok(()) };
        match self.gateway.hub().recent(conversation, last, until) {
            Some(frames) => {
                for (seq, frame) in frames {
                    self.delivered.insert(conversation, seq);
                    self.send(frame).await?;
                }
                Ok(())
            }
            None => self.fill_from_store(conversation, until).await,
        }
    }

    /// As [`fill`](Self::fill), from the store only.
    async fn fill_from_store(
        &mut self,
        conversation: ConversationId,
        until: Option<i64>,
    ) -> Result<(), ()> {
        loop {
            let Some(&last) = self.delivered.get(&conversation) else { return Ok(()) };
            if until.is_some_and(|until| last >= until) {
                return Ok(());
            }
            let page = Page::After { seq: last, limit: self.max_page };
            let messages = match self.engine.history(&self.actor, conversation, page).await {
                Ok(messages) => messages,
                Err(error) => {
                    // Removed meanwhile, or the store is down: the client is told, and
                    // resumes from what it has.
                    tracing::debug!(plugin = "messaging", %error, conversation, "catching a socket up failed");
                    self.delivered.remove(&conversation);
                    let frame = ServerFrame::Unsubscribed {
                        reference: None,
                        conversation,
                        reason: "unavailable",
                    };
                    return self.send(frame.to_text().into()).await;
                }
            };
            let full = messages.len() == self.max_page as usize;
            for message in messages {
                if until.is_some_and(|until| message.seq > until) {
                    return Ok(());
                }
                self.delivered.insert(conversation, message.seq);
                self.send(message_frame("message", &message).into()).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, text: Utf8Bytes) -> Result<(), ()> {
        self.sink.send(WsMessage::Text(text)).await.map_err(|_| ())
    }
}

/// The last sequence number of a conversation `actor` may read (a member, or a
/// moderator): 0 when it has no message yet.
async fn last_seq(
    engine: &crate::Engine,
    actor: &Actor,
    conversation: ConversationId,
) -> crate::Result<i64> {
    let latest = engine.history(actor, conversation, Page::Latest { limit: 1 }).await?;
    Ok(latest.last().map_or(0, |message| message.seq))
}

fn error_frame(reference: Option<&Ref>, error: &Error) -> String {
    ServerFrame::Error { reference, code: error.code(), message: &error.to_string() }.to_text()
}

/// The reading half: answers the client's frames one after another, so a client's sends
/// are committed in the order it sent them.
struct Reader {
    gateway: Gateway,
    connection: Arc<Connection>,
    actor: Actor,
    subscribed: std::collections::HashSet<ConversationId>,
    /// The token the socket was opened (or last renewed) with.
    token: String,
    /// When the socket closes unless a fresh token comes, once its token expired.
    grace_until: Option<Instant>,
    invalid: u32,
    /// The frame budget (a token bucket refilled at `frames_per_sec`).
    tokens: f64,
    refilled: Instant,
}

impl Reader {
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>, idle: Duration) {
        let every = self.gateway.config().token_check();
        let mut checks = tokio::time::interval_at(Instant::now() + every, every);
        let mut last_frame = Instant::now();
        loop {
            let next = tokio::select! {
                biased;
                _ = self.connection.closer.wait() => return,
                _ = checks.tick() => {
                    self.check_token();
                    if last_frame.elapsed() >= idle {
                        self.connection.closer.close(close::IDLE);
                    }
                    continue;
                }
                next = timeout(idle, stream.next()) => next,
            };
            last_frame = Instant::now();
            let frame = match next {
                Err(_) => {
                    self.connection.closer.close(close::IDLE);
                    return;
                }
                Ok(None | Some(Err(_))) => return,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                WsMessage::Text(text) => self.on_text(&text).await,
                WsMessage::Binary(_) => {
                    self.invalid(None, "binary frames are not part of the protocol: send JSON text")
                }
                WsMessage::Close(_) => return,
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
            if self.connection.closer.code().is_some() {
                return;
            }
        }
    }

    /// Checks the socket's token again: an expired one starts the grace period (the
    /// client is told), one whose session or account was ended closes the socket.
    fn check_token(&mut self) {
        match self.gateway.authenticate(&self.token) {
            Ok(_) => self.grace_until = None,
            Err(xcore_middleware::Rejection::Expired) => match self.grace_until {
                None => {
                    let grace = self.gateway.config().token_grace();
                    self.grace_until = Some(Instant::now() + grace);
                    self.reply(&ServerFrame::TokenExpired { grace_secs: grace.as_secs() });
                }
                Some(until) if Instant::now() >= until => {
                    self.connection.closer.close(close::TOKEN_EXPIRED);
                }
                Some(_) => {}
            },
            Err(_) => self.connection.closer.close(close::UNAUTHORIZED),
        }
    }

    fn reply(&self, frame: &ServerFrame<'_>) {
        self.connection.push(Outbound::Text(frame.to_text().into()));
    }

    fn invalid(&mut self, reference: Option<&Ref>, message: &str) {
        self.reply(&ServerFrame::Error { reference, code: "invalid_frame", message });
        self.invalid += 1;
        if self.invalid >= MAX_INVALID {
            self.connection.closer.close(close::POLICY);
        }
    }

    /// Takes one frame from the budget.
    fn spend(&mut self) -> bool {
        let config = self.gateway.config();
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens =
            (self.tokens + elapsed * f64::from(config.frames_per_sec)).min(config.frames_burst());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn on_text(&mut self, text: &str) {
        if !self.spend() {
            let message = "too many frames: slow down";
            self.reply(&ServerFrame::Error { reference: None, code: "rate_limited", message });
            self.invalid += 1;
            if self.invalid >= MAX_INVALID {
                self.connection.closer.close(close::POLICY);
            }
            return;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(error) => {
                let reference = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|value| value.get("ref").cloned())
                    .filter(valid_ref);
                return self.invalid(reference.as_ref(), &format!("not a valid frame: {error}"));
            }
        };
        self.on_frame(frame).await;
    }

    async fn on_frame(&mut self, frame: ClientFrame) {
        let engine = self.gateway.engine().clone();
        match frame {
            ClientFrame::Auth { reference, token } => {
                // A fresh token for the same account keeps the socket going; one for
                // another account ends it; a bad one is refused and changes nothing.
                match self.gateway.authenticate(&token) {
                    Ok(user) if crate::UserId::from(user.user_id) == self.actor.user => {
                        self.token = token;
                        self.grace_until = None;
                        self.reply(&ServerFrame::Ready { user: self.actor.user.as_str() });
                    }
                    Ok(_) => self.connection.closer.close(close::UNAUTHORIZED),
                    Err(rejection) => {
                        let message = rejection.to_string();
                        let code = rejection.code();
                        self.reply(&ServerFrame::Error {
                            reference: reference.as_ref(),
                            code,
                            message: &message,
                        });
                    }
                }
            }
            ClientFrame::Ping { reference } => {
                self.reply(&ServerFrame::Pong { reference: reference.as_ref() })
            }
            ClientFrame::Send { reference, conversation, body, attachment } => {
                let draft = Draft { body, attachment };
                match engine.send(self.actor.user.clone(), conversation, draft).await {
                    Ok(message) => self.reply(&ServerFrame::Ack {
                        reference: reference.as_ref(),
                        conversation,
                        id: message.id,
                        seq: message.seq,
                        ts: message.created_at,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Edit { reference, conversation, seq, body, attachment } => {
                let draft = Draft { body, attachment };
                let edited = engine.edit_message(&self.actor, conversation, seq, draft).await;
                self.changed(reference.as_ref(), conversation, edited);
            }
            ClientFrame::Delete { reference, conversation, seq } => {
                let deleted = engine.delete_message(&self.actor, conversation, seq).await;
                self.changed(reference.as_ref(), conversation, deleted);
            }
            ClientFrame::Presence { reference, users } => {
                let users = match users {
                    Some(users) if users.len() > MAX_PRESENCE_USERS => {
                        let reason = format!("must be at most {MAX_PRESENCE_USERS}");
                        return self.error(reference.as_ref(), &Error::invalid("users", reason));
                    }
                    Some(users) => users,
                    // The first online users by id: all of them are on the REST API.
                    None => engine.online_users().into_iter().take(MAX_PRESENCE_USERS).collect(),
                };
                let users: Vec<UserPresence> = users
                    .into_iter()
                    .map(|user| UserPresence { presence: engine.presence(&user), user })
                    .collect();
                self.reply(&ServerFrame::Presence { reference: reference.as_ref(), users: &users });
            }
            ClientFrame::Conversations { reference } => {
                match engine.conversations(&self.actor.user).await {
                    Ok(conversations) => self.reply(&ServerFrame::Conversations {
                        reference: reference.as_ref(),
                        conversations: &conversations,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Direct { reference, user } => {
                let direct = engine.direct(&self.actor.user, &user).await;
                self.conversation(reference.as_ref(), direct);
            }
            ClientFrame::GroupCreate { reference, name, members } => {
                let created = engine.create_group(self.actor.user.clone(), &name, &members).await;
                self.conversation(reference.as_ref(), created);
            }
            ClientFrame::GroupRename { reference, conversation, name } => {
                let renamed = engine.rename_group(&self.actor.user, conversation, &name).await;
                self.conversation(reference.as_ref(), renamed);
            }
            ClientFrame::GroupDelete { reference, conversation } => {
                let deleted = engine.delete_group(&self.actor.user, conversation).await;
                self.done(reference.as_ref(), deleted);
            }
            ClientFrame::Members { reference, conversation } => {
                match engine.members(&self.actor.user, conversation).await {
                    Ok(members) => self.reply(&ServerFrame::Members {
                        reference: reference.as_ref(),
                        conversation,
                        members: &members,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::MemberAdd { reference, conversation, user, role } => {
                let role = role.unwrap_or(crate::Role::Member);
                let added = engine.add_member(&self.actor.user, conversation, &user, role).await;
                self.member(reference.as_ref(), conversation, added);
            }
            ClientFrame::MemberRole { reference, conversation, user, role } => {
                let changed = engine.set_role(&self.actor.user, conversation, &user, role).await;
                self.member(reference.as_ref(), conversation, changed);
            }
            ClientFrame::MemberRemove { reference, conversation, user } => {
                let removed = engine.remove_member(&self.actor.user, conversation, &user).await;
                self.done(reference.as_ref(), removed);
            }
            ClientFrame::Leave { reference, conversation } => {
                let left = engine.leave_group(&self.actor.user, conversation).await;
                self.done(reference.as_ref(), left);
            }
            ClientFrame::Profile { reference, username, metadata } => {
                let user = if username.is_some() || metadata.is_some() {
                    engine.update_user(&self.actor.user, username.as_deref(), metadata).await
                } else {
                    engine.user(&self.actor.user).await
                };
                match user {
                    Ok(user) => self.reply(&ServerFrame::Profile {
                        reference: reference.as_ref(),
                        presence: engine.presence(&self.actor.user),
                        user: &user,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Subscribe { reference, conversation, after } => {
                if let Err(error) = last_seq(&engine, &self.actor, conversation).await {
                    return self.error(reference.as_ref(), &error);
                }
                // Registered before the writer reads where the conversation is, so that
                // nothing committed in between is missed (duplicates are dropped).
                self.gateway.hub().subscribe(conversation, &self.connection);
                self.subscribed.insert(conversation);
                self.connection.push(Outbound::Subscribe { conversation, after, reference });
            }
            ClientFrame::Unsubscribe { reference, conversation } => {
                self.gateway.hub().unsubscribe(conversation, self.connection.id);
                self.subscribed.remove(&conversation);
                self.connection.push(Outbound::Unsubscribe {
                    conversation,
                    reference,
                    reason: "asked",
                });
            }
            ClientFrame::History { reference, conversation, before, after, limit } => {
                let limit = limit.unwrap_or(50);
                let page = match (before, after) {
                    (None, None) => Page::Latest { limit },
                    (Some(seq), None) => Page::Before { seq, limit },
                    (None, Some(seq)) => Page::After { seq, limit },
                    (Some(before), Some(after)) => Page::Between { after, before, limit },
                };
                match engine.history(&self.actor, conversation, page).await {
                    Ok(messages) => self.reply(&ServerFrame::History {
                        reference: reference.as_ref(),
                        conversation,
                        messages: &messages,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Read { reference, conversation, seq } => {
                match engine.mark_read(&self.actor.user, conversation, seq).await {
                    Ok(seq) => self.reply(&ServerFrame::Read {
                        reference: reference.as_ref(),
                        conversation,
                        seq,
                    }),
                    Err(error) => self.error(reference.as_ref(), &error),
                }
            }
            ClientFrame::Typing { reference, conversation } => {
                if self.subscribed.contains(&conversation) {
                    let frame = Utf8Bytes::from(
                        ServerFrame::Typing { conversation, user: self.actor.user.as_str() }
                            .to_text(),
                    );
                    self.gateway.hub().typing(conversation, self.connection.id, frame);
                } else {
                    let error = Error::UnknownConversation(conversation);
                    self.error(reference.as_ref(), &error);
                }
            }
        }
    }

    /// Answers an edit or a deletion: `ack` with the time of the change, or the error.
    fn changed(
        &self,
        reference: Option<&Ref>,
        conversation: ConversationId,
        changed: crate::Result<crate::Message>,
    ) {
        match changed {
            Ok(message) => self.reply(&ServerFrame::Ack {
                reference,
                conversation,
                id: message.id,
                seq: message.seq,
                ts: message.edited_at.unwrap_or(message.created_at),
            }),
            Err(error) => self.error(reference, &error),
        }
    }

    fn conversation(&self, reference: Option<&Ref>, result: crate::Result<crate::Conversation>) {
        match result {
            Ok(conversation) => {
                self.reply(&ServerFrame::Conversation { reference, conversation: &conversation });
            }
            Err(error) => self.error(reference, &error),
        }
    }

    fn member(
        &self,
        reference: Option<&Ref>,
        conversation: ConversationId,
        result: crate::Result<crate::Member>,
    ) {
        match result {
            Ok(member) => {
                self.reply(&ServerFrame::Member { reference, conversation, member: &member });
            }
            Err(error) => self.error(reference, &error),
        }
    }

    fn done(&self, reference: Option<&Ref>, result: crate::Result<()>) {
        match result {
            Ok(()) => self.reply(&ServerFrame::Done { reference }),
            Err(error) => self.error(reference, &error),
        }
    }

    fn error(&self, reference: Option<&Ref>, error: &Error) {
        if let Error::Store(detail) = error {
            tracing::warn!(plugin = "messaging", %detail, "a socket request failed: the store is unavailable");
        }
        self.connection.push(Outbound::Text(error_frame(reference, error).into()));
    }
}
