//! One WebSocket connection: authentication, then a reader answering the client's
//! frames in order and a writer sending replies and deliveries from a bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use xcore_middleware::CurrentUser;

mod reader;
mod writer;

pub(crate) use reader::Reader;
pub(crate) use writer::Writer;

use super::hub::{Closer, Connection, Full, Outbound, Queue, Subscribe, Unsubscribe};
use super::protocol::{
    ClientFrame, MAX_PRESENCE_USERS, Ref, ServerFrame, UserPresence, message_frame, valid_ref,
};
use super::socketio::{self, Dialect, Polling};
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

/// Serves an upgraded socket speaking the native protocol until it closes.
///
/// The task lives as long as the connection, and its size is what each idle connection
/// costs: the opening (authentication, admission, the user's presence) runs boxed and is
/// freed once done, so the task keeps only the reader's state; and the arguments come
/// boxed, as an async fn keeps the room of its arguments for its whole life (a
/// WebSocket's is some 400 bytes).
pub(crate) async fn serve(opening: Box<(WebSocket, Gateway, Option<Caller>)>) {
    let (socket, gateway, caller) = *opening;
    let (sink, mut stream) = socket.split();
    let Some((reader, writing)) = Box::pin(open(sink, &mut stream, caller, gateway)).await else {
        return;
    };
    reader.serve(&mut stream, writing).await;
}

/// Opens a native connection: authenticates it unless the handshake did, then admits it.
/// `None` once the socket was closed instead.
async fn open(
    mut sink: SplitSink<WebSocket, WsMessage>,
    stream: &mut SplitStream<WebSocket>,
    caller: Option<Caller>,
    gateway: Gateway,
) -> Option<(Reader, JoinHandle<()>)> {
    let config = gateway.config();
    let caller = match caller {
        Some(caller) => caller,
        None => match first_auth(stream, &gateway, config.auth_timeout()).await {
            Ok(caller) => caller,
            Err((code, reason)) => {
                let _ = send_close(&mut sink, code, reason).await;
                return None;
            }
        },
    };
    let ready = |user: &str| ServerFrame::Ready { user }.to_text();
    match admit(&gateway, caller, Out::Ws(sink), Dialect::Native, ready).await {
        Ok(opened) => Some(opened),
        Err((code, reason, mut sink)) => {
            sink.close(Dialect::Native, code, reason).await;
            None
        }
    }
}

/// Admits an authenticated caller's connection to the hub, connects its user, sends it
/// `greeting(user)` and starts its writer on `sink`. When the node or the user is full or
/// the store is down, the close code and reason, and the sink to tell the client on.
pub(crate) async fn admit(
    gateway: &Gateway,
    caller: Caller,
    sink: Out,
    dialect: Dialect,
    greeting: impl FnOnce(&str) -> String,
) -> Result<(Reader, JoinHandle<()>), (u16, &'static str, Out)> {
    let config = gateway.config();
    let Caller { user, token } = caller;
    let actor = Actor {
        user: crate::UserId::from(user.user_id),
        moderator: gateway.gate().allows(&user, MODERATE),
    };
    let connection = Arc::new(Connection {
        id: gateway.next_id(),
        user: actor.user.clone(),
        queue: Queue::new(config.queue),
        closer: Closer::default(),
        pressure: tokio::sync::Notify::new(),
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
        return Err((close::TOO_MANY, reason, sink));
    }
    let engine = gateway.engine();
    let username = format!("user{}", user.user_id);
    if let Err(error) =
        engine.connect_user(actor.user.clone(), &username, serde_json::json!({})).await
    {
        tracing::warn!(plugin = "messaging", %error, "a socket could not connect its user");
        gateway.hub().remove(&connection, []);
        return Err((close::UNAVAILABLE, "messaging is unavailable; try again", sink));
    }
    connection.push(Outbound::Text(greeting(actor.user.as_str())));
    let writer = Writer {
        sink,
        dialect,
        gateway: gateway.clone(),
        engine: engine.clone(),
        actor: actor.clone(),
        delivered: HashMap::new(),
        max_page: engine.config().max_page,
    };
    let writing = tokio::spawn(writer.run(
        Arc::clone(&connection),
        config.ping_interval(),
        config.coalesce(),
    ));
    let reader = Reader {
        gateway: gateway.clone(),
        connection,
        actor,
        dialect,
        subscribed: std::collections::HashSet::new(),
        token,
        grace_until: None,
        invalid: 0,
        tokens: config.frames_burst(),
        refilled: Instant::now(),
    };
    Ok((reader, writing))
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

/// Where a connection's writer sends: a WebSocket, or the queue that a Socket.IO client's
/// long-polling requests take from until it upgrades to a WebSocket.
pub(crate) enum Out {
    Ws(SplitSink<WebSocket, WsMessage>),
    Polling(Arc<Polling>),
}

impl Out {
    /// Queues `text`, written out once the buffer is full or at [`flush`](Self::flush).
    async fn feed(&mut self, text: Utf8Bytes) -> Result<(), ()> {
        match self {
            Self::Ws(sink) => sink.feed(WsMessage::Text(text)).await.map_err(|_| ()),
            Self::Polling(polling) => polling.push(text).await,
        }
    }

    /// Sends `text` at once (on the WebSocket a long-polling client upgraded to, if it
    /// did).
    pub(crate) async fn send_now(&mut self, text: String) -> Result<(), ()> {
        self.follow_upgrade().await?;
        self.feed(text.into()).await?;
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), ()> {
        match self {
            Self::Ws(sink) => sink.flush().await.map_err(|_| ()),
            Self::Polling(polling) => {
                polling.flush();
                Ok(())
            }
        }
    }

    /// The keep-alive: a WebSocket ping, or Engine.IO's `2`.
    async fn ping(&mut self, dialect: Dialect) -> Result<(), ()> {
        match (self, dialect) {
            (Self::Ws(sink), Dialect::Native) => {
                sink.send(WsMessage::Ping(Default::default())).await.map_err(|_| ())
            }
            (out, _) => {
                out.feed(Utf8Bytes::from_static("2")).await?;
                out.flush().await
            }
        }
    }

    /// Ends the session with `code`: a close frame, or for Socket.IO the packets that
    /// tell its clients first (see [`socketio::closing`]).
    pub(crate) async fn close(&mut self, dialect: Dialect, code: u16, reason: &str) {
        let _ = self.follow_upgrade().await;
        if let Dialect::SocketIo(mode) = dialect {
            for packet in socketio::closing(mode, code, reason) {
                let _ = self.feed(packet.into()).await;
            }
            let _ = self.flush().await;
        }
        match self {
            Self::Ws(sink) => {
                let _ = send_close(sink, code, reason).await;
            }
            Self::Polling(polling) => polling.close(),
        }
    }

    /// Resolves when a long-polling client may have upgraded (then
    /// [`follow_upgrade`](Self::follow_upgrade)); never on a WebSocket. A small future:
    /// every connection's writer waits on it.
    async fn upgrading(&self) {
        match self {
            Self::Polling(polling) => polling.upgrading().await,
            Self::Ws(_) => std::future::pending().await,
        }
    }

    /// Switches a long-polling session to the WebSocket it upgraded to, if it did,
    /// sending there what the polls did not take.
    pub(crate) async fn follow_upgrade(&mut self) -> Result<(), ()> {
        match self {
            Self::Polling(polling) => match polling.take_upgrade() {
                Some(sink) => self.switch(sink).await,
                None => Ok(()),
            },
            Self::Ws(_) => Ok(()),
        }
    }

    async fn switch(&mut self, sink: SplitSink<WebSocket, WsMessage>) -> Result<(), ()> {
        let Self::Polling(polling) = self else { return Ok(()) };
        let left = polling.take_all();
        *self = Self::Ws(sink);
        for text in left {
            self.feed(text).await?;
        }
        self.flush().await
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

/// `error` for `error`, in `dialect`.
fn error_frame(dialect: Dialect, reference: Option<&Ref>, error: &Error) -> String {
    let message = error.to_string();
    dialect.encode(&ServerFrame::Error { reference, code: error.code(), message: &message })
}
