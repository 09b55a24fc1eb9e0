//! The WebSocket gateway of the real server: through the host's edge, with accounts from
//! the auth module, and closed with 1001 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use xcore_tests::ws::{TokenIn, closed_with, connect, next, send};
use xcore_tests::{Server, request_as, sign_in};

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

    let mut bob_socket = connect(server.addr, &bob, TokenIn::Query);
    send(&mut bob_socket, &json!({"type": "subscribe", "ref": 1, "conversation": group}));
    assert_eq!(next(&mut bob_socket)["type"], "subscribed");
    let mut ada_socket = connect(server.addr, &ada, TokenIn::Header);
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
