//! The WebSocket gateway over a real socket: the messaging module served on a loopback
//! port, clients speaking the protocol with tokio-tungstenite. One test binary, a module
//! per concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xcore_core::App;
use xcore_messaging::testing::{app_on, engine, gate};
use xcore_messaging::{Engine, Gateway};

mod messages;
mod nodes;
mod sessions;
mod socketio;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A served application and its address.
struct Served {
    app: App,
    address: std::net::SocketAddr,
}

async fn serve(config: &str) -> Served {
    serve_on("sqlite::memory:", config).await
}

impl Served {
    fn engine(&self) -> Engine {
        engine(&self.app)
    }

    fn gateway(&self) -> Gateway {
        self.app.extensions.get::<Gateway>().unwrap().clone()
    }

    /// Connects with `?token=` and waits for `ready`.
    async fn connect(&self, token: &str) -> Client {
        let url = format!("ws://{}/ws?token={token}", self.address);
        let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let ready = next(&mut client).await;
        assert_eq!(ready["type"], "ready", "{ready}");
        client
    }
}

/// The next text frame, as JSON (pings are answered by the client library).
async fn next(client: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .unwrap();
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn send(client: &mut Client, frame: Value) {
    client.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The close code the server ends the session with.
async fn closed_with(client: &mut Client) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// A group of accounts `1` (owner) and `members`, created through the engine.
async fn group(engine: &Engine, members: &[&str]) -> i64 {
    for id in std::iter::once(&"1").chain(members) {
        engine.connect_user(*id, &format!("user{id}"), json!({})).await.unwrap();
        engine.disconnect_user(*id).await.unwrap();
    }
    let members: Vec<_> = members.iter().map(|id| xcore_messaging::UserId::from(*id)).collect();
    engine.create_group("1", "tea", &members).await.unwrap().id
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn serve_on(database: &str, config: &str) -> Served {
    let app = app_on(&[], database, config).await.unwrap();
    let router = app.router().layer(gate().layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { app, address }
}
