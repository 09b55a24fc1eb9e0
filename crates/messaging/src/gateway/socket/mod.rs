//! One WebSocket connection: authentication, then a reader answering the client's
//! frames in order and a writer sending replies and deliveries from a bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use xcore_middleware::CurrentUser;

mod reader;
mod writer;

use reader::Reader;
use writer::Writer;

use super::hub::{Closer, Connection, Full, Outbound, Subscribe, Unsubscribe};
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
///
/// The task lives as long as the connection, and its size is what each idle connection
/// costs: the opening (authentication, admission, the user's presence) runs boxed and is
/// freed once done, so the task keeps only the reader's state.
pub(crate) async fn serve(socket: WebSocket, gateway: Gateway, caller: Option<Caller>) {
    let (sink, mut stream) = socket.split();
    let Some((mut reader, writing)) = Box::pin(open(sink, &mut stream, caller, gateway)).await
    else {
        return;
    };
    let idle = reader.gateway.config().idle_timeout();
    reader.run(&mut stream, idle).await;
    let Reader { gateway, connection, actor, subscribed, .. } = reader;
    gateway.hub().remove(&connection, subscribed.iter().copied());
    if connection.closer.code().is_none() {
        connection.closer.close(close::NORMAL);
    }
    // A writer stuck sending to a peer that does not read cannot send a close frame
    // either: the socket is dropped.
    let mut writing = writing;
    if timeout(WRITER_GRACE, &mut writing).await.is_err() {
        writing.abort();
    }
    if let Err(error) = Box::pin(gateway.engine().disconnect_user(actor.user)).await {
        tracing::debug!(plugin = "messaging", %error, "disconnecting a socket's user");
    }
}

/// Opens a connection: authenticates it unless the handshake did, admits it to the hub,
/// connects its user and starts its writer. `None` once the socket was closed instead.
async fn open(
    mut sink: SplitSink<WebSocket, WsMessage>,
    stream: &mut SplitStream<WebSocket>,
    caller: Option<Caller>,
    gateway: Gateway,
) -> Option<(Reader, JoinHandle<()>)> {
    let config = gateway.config();
    let Caller { user, token } = match caller {
        Some(caller) => caller,
        None => match first_auth(stream, &gateway, config.auth_timeout()).await {
            Ok(caller) => caller,
            Err((code, reason)) => {
                let _ = send_close(&mut sink, code, reason).await;
                return None;
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
        let _ = send_close(&mut sink, close::TOO_MANY, reason).await;
        return None;
    }
    let engine = gateway.engine();
    let username = format!("user{}", user.user_id);
    if let Err(error) =
        engine.connect_user(actor.user.clone(), &username, serde_json::json!({})).await
    {
        tracing::warn!(plugin = "messaging", %error, "a socket could not connect its user");
        gateway.hub().remove(&connection, []);
        let _ =
            send_close(&mut sink, close::UNAVAILABLE, "messaging is unavailable; try again").await;
        return None;
    }
    let ready = ServerFrame::Ready { user: actor.user.as_str() }.to_text();
    connection.push(Outbound::Text(ready));
    let writer = Writer {
        sink,
        gateway: gateway.clone(),
        engine: engine.clone(),
        actor: actor.clone(),
        delivered: HashMap::new(),
        max_page: engine.config().max_page,
    };
    let writing = tokio::spawn(writer.run(
        rx,
        Arc::clone(&connection),
        config.ping_interval(),
        config.coalesce(),
    ));
    let reader = Reader {
        gateway: gateway.clone(),
        connection,
        actor,
        subscribed: std::collections::HashSet::new(),
        token,
        grace_until: None,
        invalid: 0,
        tokens: config.frames_burst(),
        refilled: Instant::now(),
    };
    Some((reader, writing))
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
