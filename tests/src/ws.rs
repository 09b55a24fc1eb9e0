//! A blocking client for the WebSocket gateway at `/ws` (`docs/protocol.md`).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tungstenite::client::IntoClientRequest as _;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// An open socket.
pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// How the access token is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIn {
    Header,
    Query,
}

/// Opens a socket to the server at `addr` with `token`, and waits for `ready`.
///
/// # Panics
///
/// When the handshake fails or the first frame is not `ready`.
#[allow(clippy::unwrap_used)]
pub fn connect(addr: SocketAddr, token: &str, given: TokenIn) -> Client {
    let mut request = match given {
        TokenIn::Header => {
            let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
            let bearer = format!("Bearer {token}").parse().unwrap();
            request.headers_mut().insert("authorization", bearer);
            request
        }
        TokenIn::Query => format!("ws://{addr}/ws?token={token}").into_client_request().unwrap(),
    };
    request.headers_mut().insert("x-request-id", "websocket-test".parse().unwrap());
    let (mut client, response) = tungstenite::connect(request).unwrap();
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(stream) = client.get_mut() {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    }
    assert_eq!(next(&mut client)["type"], "ready");
    client
}

/// The next text frame, as JSON (pings are answered by the library).
///
/// # Panics
///
/// When the socket closes, fails, or nothing comes within 15 s.
#[allow(clippy::unwrap_used, clippy::panic)]
pub fn next(client: &mut Client) -> Value {
    loop {
        match client.read().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Sends `frame`.
///
/// # Panics
///
/// When the socket is closed.
#[allow(clippy::unwrap_used)]
pub fn send(client: &mut Client, frame: &Value) {
    client.send(Message::Text(frame.to_string().into())).unwrap();
}

/// Reads until the server closes: its close code, `None` for a close without one or a
/// dropped connection.
pub fn closed_with(client: &mut Client) -> Option<CloseCode> {
    loop {
        match client.read() {
            Ok(Message::Close(frame)) => return frame.map(|frame| frame.code),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}
