//! The two protocols on the wire: opening, subscribing, and reading and writing frames.

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::*;

/// Bytes each socket reads at once.
const READ_BUFFER: usize = 8_192;

/// Opens one socket and completes the protocol's handshake.
pub(crate) async fn open(kind: Kind, ws: &str, token: Option<&str>) -> Result<Ws> {
    match kind {
        Kind::Xcore => {
            let token = token.context("no token")?;
            let (mut socket, _) = connect(format!("{ws}/ws?token={token}"))
                .await
                .context("cannot open a socket to xcore")?;
            wait_for(kind, &mut socket, |text| text.contains(r#""type":"ready""#)).await?;
            Ok(socket)
        }
        Kind::XcoreSocketIo => {
            let token = token.context("no token")?;
            let url = format!("{ws}/socket.io/?EIO=4&transport=websocket");
            let (mut socket, _) =
                connect(url).await.context("cannot open a socket to xcore's Socket.IO")?;
            wait_for(kind, &mut socket, |text| text.starts_with('0')).await?;
            socket.send(Message::text(format!(r#"40/chat,{{"token":"{token}"}}"#))).await?;
            wait_for(kind, &mut socket, |text| text.starts_with("40/chat,")).await?;
            Ok(socket)
        }
        Kind::SocketIo => {
            let url = format!("{ws}/socket.io/?EIO=4&transport=websocket");
            let (mut socket, _) =
                connect(url).await.context("cannot open a socket to Socket.IO")?;
            // Engine.IO's open packet, then Socket.IO's connect to the main namespace.
            wait_for(kind, &mut socket, |text| text.starts_with('0')).await?;
            socket.send(Message::text("40")).await?;
            wait_for(kind, &mut socket, |text| text.starts_with("40")).await?;
            Ok(socket)
        }
    }
}

/// Connects with a small read buffer: tungstenite zeroes the free part of its buffer
/// before each read, and with the 128 KiB default that zeroing was a third of the client's
/// CPU time, which it shares with the servers it measures.
async fn connect(
    url: String,
) -> Result<
    (Ws, tokio_tungstenite::tungstenite::handshake::client::Response),
    tokio_tungstenite::tungstenite::Error,
> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    tokio_tungstenite::connect_async_with_config(url, Some(config), false).await
}

/// Subscribes a socket to the group (xcore) or joins the room (Socket.IO), with an
/// acknowledgement.
pub(crate) async fn subscribe(kind: Kind, socket: &mut Ws, conversation: i64) -> Result<()> {
    match kind {
        Kind::Xcore => {
            let frame = json!({"type": "subscribe", "ref": 0, "conversation": conversation});
            socket.send(Message::text(frame.to_string())).await?;
            wait_for(kind, socket, |text| text.contains(r#""type":"subscribed""#)).await
        }
        Kind::XcoreSocketIo => {
            let event = format!(r#"42/chat,0["subscribe",{{"conversation":{conversation}}}]"#);
            socket.send(Message::text(event)).await?;
            wait_for(kind, socket, |text| text.starts_with("43/chat,0[")).await
        }
        Kind::SocketIo => {
            socket.send(Message::text(format!(r#"420["join","{ROOM}"]"#))).await?;
            wait_for(kind, socket, |text| text.starts_with("430")).await
        }
    }
}

/// Reads until a text frame satisfies `done`, answering Engine.IO pings on the way.
pub(crate) async fn wait_for(
    kind: Kind,
    socket: &mut Ws,
    done: impl Fn(&str) -> bool,
) -> Result<()> {
    let deadline = Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout(deadline, socket.next())
            .await
            .context("no answer within 30 s")?
            .context("the server closed the socket")??;
        if let Message::Text(text) = frame {
            if done(text.as_str()) {
                return Ok(());
            }
            if text.as_str().contains(r#""type":"error""#) {
                bail!("the server answered {text}");
            }
            if kind.engine_io() && text.as_str() == "2" {
                socket.send(Message::text("3")).await?;
            }
        } else if let Message::Close(close) = frame {
            bail!("the server closed the socket: {close:?}");
        }
    }
}

pub(crate) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut inbox: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(frame) = inbox.recv().await {
        if sink.send(frame).await.is_err() {
            return;
        }
    }
}

/// Records deliveries and acknowledgements until the socket ends.
pub(crate) async fn read_loop(
    kind: Kind,
    mut stream: futures_util::stream::SplitStream<Ws>,
    outbox: mpsc::UnboundedSender<Message>,
    shard: Arc<Mutex<Vec<u32>>>,
    shared: Arc<Shared>,
    pending: Arc<Mutex<HashMap<u64, u64>>>,
) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let text = text.as_str();
        if let Some((round, sent)) = body_stamp(text) {
            if round == shared.round.load(Ordering::Relaxed) {
                let now = now_micros();
                let latency = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
                if let Ok(mut shard) = shard.lock() {
                    shard.push(latency);
                }
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.last_delivery.fetch_max(now, Ordering::Relaxed);
            }
        } else if let Some(number) = ack_ref(kind, text) {
            let sent = pending.lock().ok().and_then(|mut pending| pending.remove(&number));
            if let (Some(sent), Ok(mut acks)) = (sent, shared.acks.lock()) {
                acks.push(u32::try_from(now_micros().saturating_sub(sent)).unwrap_or(u32::MAX));
            }
        } else if kind.engine_io() && text == "2" {
            let _ = outbox.send(Message::text("3"));
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// The round and send time a message body carries: `"body":"RRRRRR TTTTTTTTTTTTTT …`.
pub(crate) fn body_stamp(text: &str) -> Option<(u64, u64)> {
    let start = text.find(r#""body":""#)? + 8;
    let stamp = text.get(start..start + 21)?;
    Some((stamp[..6].parse().ok()?, stamp[7..].parse().ok()?))
}

/// The request number an acknowledgement answers, if `text` is one.
pub(crate) fn ack_ref(kind: Kind, text: &str) -> Option<u64> {
    let digits = match kind {
        Kind::Xcore => text.strip_prefix(r#"{"type":"ack","ref":"#)?,
        // `43<id>[…]`: an ack of the main namespace.
        Kind::SocketIo => text.strip_prefix("43")?,
        Kind::XcoreSocketIo => text.strip_prefix("43/chat,")?,
    };
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

/// A 100-byte body stamped with the round and the send time.
pub(crate) fn body(round: u64, sent: u64) -> String {
    let mut body = format!("{round:06} {sent:014} ");
    body.extend(std::iter::repeat_n('x', BODY_BYTES - body.len()));
    body
}
