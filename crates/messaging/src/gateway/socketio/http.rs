//! `/socket.io/` over HTTP: the Engine.IO handshake, long-polling, the upgrade to a
//! WebSocket, and a session's opening (the connect to a namespace, authentication,
//! admission and recovery).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use xcore_core::Routes;
use xcore_core::http::ApiError;
use xcore_middleware::Rejection;

use super::packet::{self, EnginePacket, Kind, Packet};
use super::{Dialect, INCOMING, Mode, Namespace, Polling, parse_offset, polling, random_id};
use crate::gateway::protocol::ClientFrame;
use crate::gateway::socket::{Caller, Out, Reader};
use crate::gateway::{Gateway, close};
use crate::model::ConversationId;

/// The routes at `/socket.io/`: `GET` opens a session (long-polling or WebSocket), polls
/// and upgrades; `POST` carries a long-polling client's packets.
pub(crate) fn routes(gateway: Gateway) -> Routes {
    Routes::new().routes(utoipa_axum::routes!(get_engine, post_engine)).with_state(gateway)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EngineQuery {
    /// The Engine.IO protocol version.
    #[serde(rename = "EIO")]
    #[param(rename = "EIO", required, pattern = "^4$")]
    eio: Option<String>,
    /// `polling`. (A WebSocket handshake with `websocket` opens a session on a WebSocket,
    /// or with `sid` upgrades one: see `docs/protocol.md`.)
    #[param(required, pattern = "^polling$")]
    transport: Option<String>,
    /// The session, once open.
    #[param(pattern = "^[0-9a-f]{32}$")]
    sid: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PostQuery {
    /// The Engine.IO protocol version.
    #[serde(rename = "EIO")]
    #[param(rename = "EIO", required, pattern = "^4$")]
    eio: Option<String>,
    /// `polling`.
    #[param(required, pattern = "^polling$")]
    transport: Option<String>,
    /// The session.
    #[param(required, pattern = "^[0-9a-f]{32}$")]
    sid: Option<String>,
}

fn unknown_session() -> Response {
    let message = "no such long-polling session: it ended, or it is on another node";
    ApiError::new(StatusCode::NOT_FOUND, "session_not_found", message).into_response()
}

pub(super) fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> Response {
    ApiError::bad_request(message).into_response()
}

/// Socket.IO's Engine.IO endpoint. Without `sid`: opens a session, answering the
/// Engine.IO open packet (long-polling) or upgrading to a WebSocket. With `sid`: a
/// long-polling client's poll, answering the packets queued for it, or its upgrade to a
/// WebSocket.
#[utoipa::path(get, path = "/", tag = "messaging", params(EngineQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 101, description = "switching to the WebSocket transport"),
        (status = 200, description = "Engine.IO packets, separated by the record separator (U+001E)", body = String, content_type = "text/plain"),
        (status = 400, description = "`bad_request`: an unsupported protocol version or transport, or a second pending poll"),
        (status = 404, description = "`session_not_found`: no such session on this node"),
    ))]
async fn get_engine(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    query: Result<Query<EngineQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return bad_request("malformed query") };
    if query.eio.as_deref() != Some("4") {
        return bad_request(
            "unsupported protocol version: this server speaks Engine.IO 4 (`EIO=4`)",
        );
    }
    let header_caller = header_caller(&gateway, &headers);
    match (query.transport.as_deref(), query.sid) {
        (Some("polling"), None) => open_polling(gateway, header_caller),
        (Some("polling"), Some(sid)) => match gateway.sessions().get(&sid) {
            Some(polling) => polling::poll(&polling, gateway.config().ping_interval()).await,
            None => unknown_session(),
        },
        (Some("websocket"), sid) => {
            let Ok(upgrade) = upgrade else {
                return bad_request("the websocket transport needs a WebSocket handshake");
            };
            let polling = match sid {
                Some(sid) => match gateway.sessions().get(&sid) {
                    Some(polling) => Some(polling),
                    None => return unknown_session(),
                },
                None => None,
            };
            let upgrade = gateway.config().tune(upgrade);
            match polling {
                Some(polling) => {
                    upgrade.on_upgrade(move |socket| upgrade_polling(socket, polling, gateway))
                }
                None => upgrade.on_upgrade(move |socket| {
                    serve_websocket(Box::new((socket, gateway, header_caller)))
                }),
            }
        }
        _ => bad_request("unknown transport: `polling` or `websocket`"),
    }
}

/// A long-polling client's packets, separated by the record separator (U+001E).
#[utoipa::path(post, path = "/", tag = "messaging", params(PostQuery),
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "`ok`: the packets were taken", body = String, content_type = "text/plain"),
        (status = 400, description = "`bad_request`: an unsupported protocol version or transport, or a body that is not text"),
        (status = 404, description = "`session_not_found`: no such session on this node, or it ended or upgraded"),
        (status = 413, description = "`payload_too_large`: a body over `maxPayload`"),
    ))]
async fn post_engine(
    State(gateway): State<Gateway>,
    query: Result<Query<PostQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    let Ok(Query(query)) = query else { return bad_request("malformed query") };
    if query.eio.as_deref() != Some("4") || query.transport.as_deref() != Some("polling") {
        return bad_request("packets are posted with `EIO=4&transport=polling&sid=…`");
    }
    let Some(polling) = query.sid.as_deref().and_then(|sid| gateway.sessions().get(sid)) else {
        return unknown_session();
    };
    let limit = gateway.config().max_frame_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        let message = format!("a body may hold at most {limit} bytes (`maxPayload`)");
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            .into_response();
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the body must be UTF-8 text");
    };
    match polling.receive(text).await {
        Ok(()) => polling::answer("ok".to_owned()),
        Err(()) => unknown_session(),
    }
}

/// Who the handshake's `Authorization` header says the client is: nobody without one, or
/// the refusal to tell the client at its connect.
fn header_caller(gateway: &Gateway, headers: &HeaderMap) -> Result<Option<Caller>, Rejection> {
    match xcore_middleware::identity::bearer(headers) {
        Ok(Some(token)) => {
            gateway.authenticate(token).map(|user| Some(Caller { user, token: token.to_owned() }))
        }
        Ok(None) => Ok(None),
        Err(rejection) => Err(rejection),
    }
}

/// Opens a long-polling session: its open packet is the answer.
fn open_polling(gateway: Gateway, header_caller: Result<Option<Caller>, Rejection>) -> Response {
    let sid = random_id();
    let (incoming, received) = mpsc::channel(INCOMING);
    let config = gateway.config();
    let polling = Arc::new(Polling::new(incoming, config.max_frame_bytes));
    gateway.sessions().insert(sid.clone(), Arc::clone(&polling));
    let open = open_packet(&gateway, &sid, true);
    tokio::spawn(async move {
        let mut received = received;
        let mut stream =
            futures_util::stream::poll_fn(move |cx| received.poll_recv(cx).map(|m| m.map(Ok)));
        let out = Out::Polling(Arc::clone(&polling));
        serve_session(&gateway, out, &mut stream, header_caller).await;
        // The last packets (a refusal, the close) are for the next poll to take.
        polling.close();
        let _ = tokio::time::timeout(gateway.config().ping_interval(), polling.drained()).await;
        gateway.sessions().remove(&sid);
    });
    polling::answer(open)
}

fn open_packet(gateway: &Gateway, sid: &str, upgrades: bool) -> String {
    let config = gateway.config();
    let ping = config.ping_interval();
    let timeout = config.idle_timeout().saturating_sub(ping);
    packet::open(
        sid,
        upgrades,
        ping.as_millis().try_into().unwrap_or(u64::MAX),
        timeout.as_millis().try_into().unwrap_or(u64::MAX),
        config.max_frame_bytes,
    )
}

/// What a session opened directly on a WebSocket starts from.
type Opening = (WebSocket, Gateway, Result<Option<Caller>, Rejection>);

/// A session opened directly on a WebSocket. Its arguments come boxed: an async fn keeps
/// the room of its arguments for its whole life, and a WebSocket's is some 400 bytes.
async fn serve_websocket(opening: Box<Opening>) {
    let (socket, gateway, header_caller) = *opening;
    let (mut sink, mut stream) = socket.split();
    let open = open_packet(&gateway, &random_id(), false);
    if sink.send(WsMessage::Text(open.into())).await.is_err() {
        return;
    }
    let out = Out::Ws(sink);
    let opened = Box::pin(open_session(&gateway, out, &mut stream, header_caller)).await;
    if let Some((reader, writing)) = opened {
        reader.serve(&mut stream, writing).await;
    }
}

/// Upgrades a long-polling session to `socket`: the probe (`2probe`, answered `3probe`),
/// then `5`; from then on the session's packets go both ways on the socket.
async fn upgrade_polling(socket: WebSocket, polling: Arc<Polling>, gateway: Gateway) {
    let (mut sink, mut stream) = socket.split();
    let within = gateway.config().auth_timeout();
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) if text.as_str() == "2probe" => {}
        _ => return,
    }
    if sink.send(WsMessage::Text(Utf8Bytes::from_static("3probe"))).await.is_err() {
        return;
    }
    // The pending poll answers at once, so that the client can send the upgrade.
    polling.pause();
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) if text.as_str() == "5" => {}
        _ => return polling.resume(),
    }
    let Some(incoming) = polling.switch(sink) else { return };
    while let Some(Ok(message)) = stream.next().await {
        if incoming.send(message).await.is_err() {
            return;
        }
    }
}

/// Serves a session: waits for the client's connect to a namespace, authenticates and
/// admits it, then answers its packets until it closes.
///
/// As for native sockets, the opening runs boxed and is freed once done: the task of an
/// idle connection keeps only the reader's state.
async fn serve_session<S>(
    gateway: &Gateway,
    out: Out,
    stream: &mut S,
    header_caller: Result<Option<Caller>, Rejection>,
) where
    S: futures_util::Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
{
    let opened = Box::pin(open_session(gateway, out, stream, header_caller)).await;
    if let Some((reader, writing)) = opened {
        reader.serve(stream, writing).await;
    }
}

/// Opens a session: the connect, the authentication, the admission, and the subscriptions
/// it restores. `None` once the client was refused or gave up.
async fn open_session<S>(
    gateway: &Gateway,
    mut out: Out,
    stream: &mut S,
    header_caller: Result<Option<Caller>, Rejection>,
) -> Option<(Reader, tokio::task::JoinHandle<()>)>
where
    S: futures_util::Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
{
    let Some((namespace, auth)) = wait_connect(gateway, &mut out, stream).await else {
        out.close(Dialect::Native, close::UNAUTHORIZED, "no connect in time").await;
        return None;
    };
    let path = namespace.path();
    let token = auth.get("token").and_then(Value::as_str);
    let caller = match (token, header_caller) {
        (Some(token), _) => {
            gateway.authenticate(token).map(|user| Caller { user, token: token.to_owned() })
        }
        (None, Ok(Some(caller))) => Ok(caller),
        (None, Ok(None)) => Err(Rejection::Missing),
        (None, Err(rejection)) => Err(rejection),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(rejection) => {
            let refused = packet::connect_error(path, rejection.code(), &rejection.to_string());
            let _ = refuse(&mut out, refused).await;
            return None;
        }
    };
    let offsets = auth.get("offset").and_then(Value::as_str).and_then(parse_offset);
    let pid = auth
        .get("pid")
        .and_then(Value::as_str)
        .filter(|pid| pid.len() <= 64 && pid.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    let recover = auth
        .get("recover")
        .and_then(Value::as_bool)
        .unwrap_or(pid.is_some() || namespace == Namespace::Chat);
    // The client's session is recovered when it gave back its `pid` and an offset: the
    // same `pid` in the answer tells it so.
    let recovered = recover && pid.is_some() && offsets.is_some();
    let pid = match (recovered, pid) {
        (true, Some(pid)) => Some(pid.to_owned()),
        _ => recover.then(random_id),
    };
    let mode = Mode { namespace, recover };
    let greeting = packet::connected(path, &random_id(), pid.as_deref());
    let opened =
        crate::gateway::socket::admit(gateway, caller, out, Dialect::SocketIo(mode), |_| greeting)
            .await;
    let (mut reader, writing) = match opened {
        Ok(opened) => opened,
        Err((code, reason, mut out)) => {
            let refused = packet::connect_error(path, closing_code(code), reason);
            let _ = refuse(&mut out, refused).await;
            return None;
        }
    };
    let mut subscriptions: Vec<(ConversationId, Option<i64>)> =
        offsets.unwrap_or_default().into_iter().map(|(c, seq)| (c, Some(seq))).collect();
    if namespace == Namespace::Root {
        // The original's namespace is the lobby, and only the lobby.
        let lobby = gateway.hub().lobby();
        subscriptions.retain(|(conversation, _)| Some(*conversation) == lobby);
        if let (Some(lobby), true) = (lobby, subscriptions.is_empty()) {
            subscriptions.push((lobby, None));
        }
    }
    for (conversation, after) in subscriptions {
        reader.on_valid(ClientFrame::Subscribe { reference: None, conversation, after }).await;
    }
    Some((reader, writing))
}

/// The code a refused connect gives for a close code.
fn closing_code(code: u16) -> &'static str {
    match code {
        close::TOO_MANY => "too_many_connections",
        _ => "unavailable",
    }
}

/// Sends a connect error, then closes the transport.
async fn refuse(out: &mut Out, refused: String) -> Result<(), ()> {
    out.send_now(refused).await?;
    out.close(Dialect::Native, close::NORMAL, "").await;
    Ok(())
}

/// Waits for the client's first Socket.IO packet, which must connect to a namespace xcore
/// serves, answering Engine.IO's packets meanwhile. The namespace and the connect's
/// `auth` payload; `None` when the client gave up or took too long.
async fn wait_connect<S>(
    gateway: &Gateway,
    out: &mut Out,
    stream: &mut S,
) -> Option<(Namespace, Map<String, Value>)>
where
    S: futures_util::Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + gateway.config().auth_timeout();
    loop {
        let text = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) => text,
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
            _ => return None,
        };
        let data = match EnginePacket::decode(&text) {
            Some(EnginePacket::Message(data)) => data,
            Some(EnginePacket::Ping(data)) => {
                out.send_now(format!("3{data}")).await.ok()?;
                continue;
            }
            Some(EnginePacket::Pong(_) | EnginePacket::Noop) => continue,
            _ => return None,
        };
        let packet = Packet::decode(data).ok()?;
        if packet.kind != Kind::Connect {
            return None;
        }
        let Some(namespace) = Namespace::parse(packet.namespace) else {
            let message =
                format!("no namespace `{}`: xcore serves `/` and `/chat`", packet.namespace);
            out.send_now(packet::connect_error(packet.namespace, "unknown_namespace", &message))
                .await
                .ok()?;
            continue;
        };
        let auth = match packet.data.map(serde_json::from_str::<Value>) {
            None => Map::new(),
            Some(Ok(Value::Object(auth))) => auth,
            Some(_) => {
                let refused = packet::connect_error(
                    packet.namespace,
                    "bad_request",
                    "the connect payload must be an object: `{\"token\": …}`",
                );
                out.send_now(refused).await.ok()?;
                continue;
            }
        };
        return Some((namespace, auth));
    }
}
