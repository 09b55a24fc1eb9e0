//! The WebSocket gateway of the real server: through the host's edge, with accounts from
//! the auth module, and closed with 1001 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest as _;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use xcore_tests::{Server, request_as, sign_in};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(server: &Server, token: &str, by_header: bool) -> Client {
    let mut request = if by_header {
        let mut request = format!("ws://{}/ws", server.addr).into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    } else {
        format!("ws://{}/ws?token={token}", server.addr).into_client_request().unwrap()
    };
    request.headers_mut().insert("x-request-id", "gateway-test".parse().unwrap());
    let (mut client, response) = tungstenite::connect(request).unwrap();
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(stream) = client.get_mut() {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    }
    assert_eq!(next(&mut client)["type"], "ready");
    client
}

fn next(client: &mut Client) -> Value {
    loop {
        match client.read().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn send(client: &mut Client, frame: &Value) {
    client.send(Message::Text(frame.to_string().into())).unwrap();
}

fn closed_with(client: &mut Client) -> Option<CloseCode> {
    loop {
        match client.read() {
            Ok(Message::Close(frame)) => return frame.map(|frame| frame.code),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn members_talk_over_sockets_and_sigterm_closes_them_with_going_away() {
    let mut server = Server::start(&[]);
    let ada = sign_in(server.addr, "ada@example.com");
    let bob = sign_in(server.addr, "bob@example.com");
    let me = request_as(server.addr, Some(&bob), "GET", "/messaging/me", None).unwrap();
    let bob_id = me.json()["user"]["id"].as_str().unwrap().to_owned();
    let body = json!({"name": "tea", "members": [bob_id]}).to_string();
    let group =
        request_as(server.addr, Some(&ada), "POST", "/messaging/groups", Some(&body)).unwrap();
    assert_eq!(group.status, 201, "{}", group.body);
    let group = group.json()["id"].as_i64().unwrap();

    let mut bob_socket = connect(&server, &bob, false);
    send(&mut bob_socket, &json!({"type": "subscribe", "ref": 1, "conversation": group}));
    assert_eq!(next(&mut bob_socket)["type"], "subscribed");
    let mut ada_socket = connect(&server, &ada, true);
    send(
        &mut ada_socket,
        &json!({"type": "send", "ref": "a", "conversation": group, "body": "hi bob"}),
    );
    let ack = next(&mut ada_socket);
    assert_eq!((ack["type"].as_str(), ack["seq"].as_i64()), (Some("ack"), Some(1)), "{ack}");
    let delivered = next(&mut bob_socket);
    assert_eq!(delivered["message"]["body"], "hi bob");

    // What the socket acknowledged, the REST API reads.
    let path = format!("/messaging/conversations/{group}/messages");
    let history = request_as(server.addr, Some(&bob), "GET", &path, None).unwrap();
    assert_eq!(history.json()["messages"][0]["body"], "hi bob", "{}", history.body);

    server.terminate();
    assert_eq!(closed_with(&mut bob_socket), Some(CloseCode::Away));
    assert_eq!(closed_with(&mut ada_socket), Some(CloseCode::Away));
    assert!(server.wait(Duration::from_secs(15)).is_some(), "the server exits");
}
