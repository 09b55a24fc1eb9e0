//! The WebSocket gateway over a real socket: the messaging module served on a loopback
//! port, clients speaking the protocol with tokio-tungstenite.

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

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A served application and its address.
struct Served {
    app: App,
    address: std::net::SocketAddr,
}

async fn serve(config: &str) -> Served {
    let app = app_on(&[], "sqlite::memory:", config).await.unwrap();
    let router = app.router().layer(gate().layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { app, address }
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

#[tokio::test]
async fn a_sent_message_is_acknowledged_once_committed_and_delivered_to_subscribers() {
    let served = serve("").await;
    let group = group(&served.engine(), &["2"]).await;
    let mut ada = served.connect("user:1").await;
    let mut bob = served.connect("user:2").await;
    send(&mut bob, json!({"type": "subscribe", "ref": "s", "conversation": group})).await;
    let subscribed = next(&mut bob).await;
    assert_eq!(
        subscribed,
        json!({"type": "subscribed", "ref": "s", "conversation": group, "last_seq": 0})
    );

    send(&mut ada, json!({"type": "send", "ref": 7, "conversation": group, "body": "hello"})).await;
    let ack = next(&mut ada).await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_i64(), ack["seq"].as_i64()),
        (Some("ack"), Some(7), Some(1))
    );
    assert!(ack["id"].is_i64() && ack["ts"].is_string(), "{ack}");
    let stored = served
        .engine()
        .history(
            &xcore_messaging::Actor::user("1"),
            group,
            xcore_messaging::Page::Latest { limit: 5 },
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "acknowledged means stored");

    let delivered = next(&mut bob).await;
    assert_eq!(delivered["type"], "message");
    assert_eq!(delivered["message"]["body"], "hello");
    assert_eq!(delivered["message"]["seq"], 1);
    assert_eq!(delivered["message"]["sender_id"], "1");
    // Presence: each socket is a device.
    assert!(served.engine().presence(&"2".into()).online);
}

#[tokio::test]
async fn a_resuming_client_gets_every_missed_message_in_order_then_live_ones() {
    let served = serve("").await;
    let engine = served.engine();
    let group = group(&engine, &["2"]).await;
    for n in 1..=30 {
        engine.send("1", group, format!("m{n}").as_str()).await.unwrap();
    }
    let mut bob = served.connect("user:2").await;
    send(&mut bob, json!({"type": "subscribe", "conversation": group, "after": 12})).await;
    let mut seqs = Vec::new();
    loop {
        let frame = next(&mut bob).await;
        if frame["type"] == "subscribed" {
            assert_eq!(frame["last_seq"], 30);
            break;
        }
        assert_eq!(frame["message"]["body"], format!("m{}", frame["message"]["seq"]));
        seqs.push(frame["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (13..=30).collect::<Vec<_>>());
    // Live ones follow, from concurrent senders, each once and in order.
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    engine.send("1", group, "live").await.unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let live: Vec<i64> = {
        let mut live = Vec::new();
        while live.len() < 40 {
            let frame = next(&mut bob).await;
            live.push(frame["message"]["seq"].as_i64().unwrap());
        }
        live
    };
    assert_eq!(live, (31..=70).collect::<Vec<_>>(), "no gap, no duplicate, in order");

    // A position past the end is refused, saying why.
    send(&mut bob, json!({"type": "subscribe", "ref": 1, "conversation": group, "after": 99}))
        .await;
    let error = next(&mut bob).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("invalid_input"))
    );
}

#[tokio::test]
async fn only_members_subscribe_and_a_removed_member_stops_receiving() {
    let served = serve("").await;
    let engine = served.engine();
    let group = group(&engine, &["2"]).await;
    engine.connect_user("3", "user3", json!({})).await.unwrap();
    let mut eve = served.connect("user:3").await;
    send(&mut eve, json!({"type": "subscribe", "ref": "x", "conversation": group})).await;
    let error = next(&mut eve).await;
    assert_eq!(
        error,
        json!({"type": "error", "ref": "x", "code": "conversation_not_found", "message": format!("no conversation {group}")})
    );
    send(&mut eve, json!({"type": "send", "ref": "y", "conversation": group, "body": "hi"})).await;
    assert_eq!(next(&mut eve).await["code"], "conversation_not_found");

    // A moderator reads any conversation.
    let mut moderator = served.connect("mod:9").await;
    send(&mut moderator, json!({"type": "subscribe", "conversation": group})).await;
    assert_eq!(next(&mut moderator).await["type"], "subscribed");

    let mut bob = served.connect("user:2").await;
    send(&mut bob, json!({"type": "subscribe", "conversation": group})).await;
    assert_eq!(next(&mut bob).await["type"], "subscribed");
    engine.remove_member(&"1".into(), group, &"2".into()).await.unwrap();
    let frame = next(&mut bob).await;
    assert_eq!(frame, json!({"type": "unsubscribed", "conversation": group, "reason": "removed"}));
    engine.send("1", group, "after removal").await.unwrap();
    assert_eq!(next(&mut moderator).await["message"]["body"], "after removal");
    send(&mut bob, json!({"type": "ping", "ref": 3})).await;
    assert_eq!(next(&mut bob).await, json!({"type": "pong", "ref": 3}), "nothing else came before");
}

#[tokio::test]
async fn tokens_come_by_header_query_or_first_frame_and_bad_ones_are_refused() {
    let served = serve("[messaging.gateway]\nauth_timeout_secs = 1").await;
    // Header.
    let mut request = format!("ws://{}/ws", served.address).into_client_request().unwrap();
    request.headers_mut().insert("authorization", "Bearer user:4".parse().unwrap());
    let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next(&mut client).await, json!({"type": "ready", "user": "4"}));
    // First frame.
    let url = format!("ws://{}/ws", served.address);
    let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(&mut client, json!({"type": "auth", "token": "user:5"})).await;
    assert_eq!(next(&mut client).await, json!({"type": "ready", "user": "5"}));
    // A bad first frame, or none in time: closed with 4001.
    let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(&mut client, json!({"type": "auth", "token": "nonsense"})).await;
    assert_eq!(closed_with(&mut client).await, Some(CloseCode::Library(4001)));
    let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(closed_with(&mut client).await, Some(CloseCode::Library(4001)));
    // An invalid token in the handshake: 401, no socket.
    let refused = tokio_tungstenite::connect_async(format!("{url}?token=nonsense")).await;
    match refused {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_frames_get_errors_then_a_close_and_never_harm_the_node() {
    let served = serve("").await;
    let mut client = served.connect("user:1").await;
    send(&mut client, json!({"type": "send", "ref": "r1", "conversation": "x"})).await;
    let error = next(&mut client).await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("invalid_frame"), Some("r1"))
    );
    client.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next(&mut client).await["code"], "invalid_frame");
    client.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next(&mut client).await["code"], "invalid_frame");
    send(&mut client, json!({"type": "send", "conversation": 1, "body": ""})).await;
    assert_eq!(next(&mut client).await["code"], "invalid_input");
    for _ in 0..20 {
        send(&mut client, json!({"type": "nonsense"})).await;
    }
    assert_eq!(closed_with(&mut client).await, Some(CloseCode::Library(4002)));
    // The node serves the next client as before.
    let mut next_client = served.connect("user:2").await;
    send(&mut next_client, json!({"type": "ping"})).await;
    assert_eq!(next(&mut next_client).await, json!({"type": "pong"}));
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_without_delaying_anyone_else() {
    let served = serve("[messaging.gateway]\nqueue = 8").await;
    let engine = served.engine();
    let group = group(&engine, &["2", "3"]).await;
    let mut fast = served.connect("user:2").await;
    let mut slow = served.connect("user:3").await;
    for client in [&mut fast, &mut slow] {
        send(client, json!({"type": "subscribe", "conversation": group})).await;
        assert_eq!(next(client).await["type"], "subscribed");
    }
    // The slow client reads nothing while 2,000 messages of 3,000 characters are sent:
    // more than the socket buffers hold.
    let body = "x".repeat(3000);
    let sending = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for _ in 0..2000 {
                engine.send("1", group, body.as_str()).await.unwrap();
            }
        })
    };
    for seq in 1..=2000 {
        let frame = next(&mut fast).await;
        assert_eq!(frame["message"]["seq"], seq);
    }
    sending.await.unwrap();
    // The slow one was closed: it ends (with 4008 when the close frame got through).
    let mut seen = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await.unwrap() {
            Some(Ok(Message::Text(_))) => seen += 1,
            Some(Ok(Message::Close(frame))) => break frame.map(|frame| frame.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(seen < 2000, "the slow client was cut off, after {seen} messages");
    assert!(matches!(ended, None | Some(CloseCode::Library(4008))), "{ended:?}");
    for _ in 0..200 {
        if served.gateway().connections() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served.gateway().connections(), 1, "only the fast client is left");
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_going_away() {
    let served = serve("").await;
    let mut first = served.connect("user:1").await;
    let mut second = served.connect("user:1").await;
    served.gateway().shutdown(Duration::from_secs(5)).await;
    assert_eq!(closed_with(&mut first).await, Some(CloseCode::Away));
    assert_eq!(closed_with(&mut second).await, Some(CloseCode::Away));
    assert_eq!(served.gateway().connections(), 0);
    assert!(!served.engine().presence(&"1".into()).online, "both devices went offline");
}

#[tokio::test]
async fn a_request_that_is_not_a_handshake_gets_426() {
    let served = serve("").await;
    let mut stream = TcpStream::connect(served.address).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(answer.to_lowercase().contains("upgrade: websocket"), "{answer}");
    assert!(answer.contains("upgrade_required"), "{answer}");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn an_expired_token_closes_the_socket_after_the_grace_unless_a_fresh_one_comes() {
    let config = "[messaging.gateway]\ntoken_check_secs = 1\ntoken_grace_secs = 2";
    let served = serve(config).await;
    let soon = unix_now() + 2;
    let mut renewing = served.connect(&format!("until:{soon}:6")).await;
    let mut lapsing = served.connect(&format!("until:{soon}:7")).await;
    let notice = next(&mut renewing).await;
    assert_eq!(notice, json!({"type": "token_expired", "grace_secs": 2}));
    let fresh = format!("until:{}:6", unix_now() + 600);
    send(&mut renewing, json!({"type": "auth", "token": fresh})).await;
    assert_eq!(next(&mut renewing).await, json!({"type": "ready", "user": "6"}));
    // Without a fresh token, the socket ends after the grace.
    assert_eq!(next(&mut lapsing).await["type"], "token_expired");
    assert_eq!(closed_with(&mut lapsing).await, Some(CloseCode::Library(4003)));
    // The renewed socket lives on past the first token's grace.
    tokio::time::sleep(Duration::from_secs(3)).await;
    send(&mut renewing, json!({"type": "ping", "ref": 1})).await;
    assert_eq!(next(&mut renewing).await, json!({"type": "pong", "ref": 1}));
    // A token for another account is not a renewal: the socket ends.
    send(&mut renewing, json!({"type": "auth", "ref": 2, "token": "user:8"})).await;
    assert_eq!(closed_with(&mut renewing).await, Some(CloseCode::Library(4001)));
}

#[tokio::test]
async fn a_malformed_handshake_key_gets_400() {
    let served = serve("").await;
    let mut stream = TcpStream::connect(served.address).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Key"), "{answer}");
}

/// Two nodes on one PostgreSQL database, relaying through `broker` at `url`.
async fn two_nodes(broker: &str, url: &str) -> Option<(Served, Served)> {
    let database = xcore_db::testing::fresh_postgres_url("gateway").await?;
    let channel = format!("xcore.test.{}.{}", std::process::id(), unix_now_nanos());
    let config = format!(
        "[messaging]\nbroker = \"{broker}\"\nbroker_url = \"{url}\"\nbroker_channel = \"{channel}\""
    );
    let first = serve_on(&database, &config).await;
    let second = serve_on(&database, &config).await;
    Some((first, second))
}

fn unix_now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn serve_on(database: &str, config: &str) -> Served {
    let app = app_on(&[], database, config).await.unwrap();
    let router = app.router().layer(gate().layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { app, address }
}

/// What is sent on one node reaches the other node's subscribers, in order, edits and
/// typing included; a member removed on one node is unsubscribed on the other.
async fn relayed(first: Served, second: Served) {
    let group = group(&first.engine(), &["2"]).await;
    let mut bob = second.connect("user:2").await;
    send(&mut bob, json!({"type": "subscribe", "conversation": group})).await;
    assert_eq!(next(&mut bob).await["type"], "subscribed");
    let mut ada = first.connect("user:1").await;
    send(&mut ada, json!({"type": "subscribe", "conversation": group})).await;
    assert_eq!(next(&mut ada).await["type"], "subscribed");
    for n in 1..=20 {
        send(
            &mut ada,
            json!({"type": "send", "ref": n, "conversation": group, "body": format!("m{n}")}),
        )
        .await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        let frame = next(&mut bob).await;
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["message"]["body"], format!("m{}", frame["message"]["seq"]));
        seqs.push(frame["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    send(&mut ada, json!({"type": "typing", "conversation": group})).await;
    assert_eq!(next(&mut bob).await, json!({"type": "typing", "conversation": group, "user": "1"}));
    first
        .engine()
        .edit_message(&xcore_messaging::Actor::user("1"), group, 3, "edited")
        .await
        .unwrap();
    let edit = next(&mut bob).await;
    assert_eq!(
        (edit["type"].as_str(), edit["message"]["body"].as_str()),
        (Some("edit"), Some("edited"))
    );
    first.engine().remove_member(&"1".into(), group, &"2".into()).await.unwrap();
    assert_eq!(
        next(&mut bob).await,
        json!({"type": "unsubscribed", "conversation": group, "reason": "removed"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_relay_through_redis() {
    let Ok(url) = std::env::var("XCORE_TEST_REDIS_URL") else {
        eprintln!("skipped: XCORE_TEST_REDIS_URL is not set");
        return;
    };
    let Some((first, second)) = two_nodes("redis", &url).await else { return };
    relayed(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_relay_through_nats() {
    let Ok(url) = std::env::var("XCORE_TEST_NATS_URL") else {
        eprintln!("skipped: XCORE_TEST_NATS_URL is not set");
        return;
    };
    let Some((first, second)) = two_nodes("nats", &url).await else { return };
    relayed(first, second).await;
}

#[tokio::test]
async fn a_broker_that_cannot_be_reached_stops_startup_with_its_address() {
    let config = "[messaging]\nbroker = \"redis\"\nbroker_url = \"redis://127.0.0.1:1\"";
    let started = std::panic::AssertUnwindSafe(app_on(&[], "sqlite::memory:", config));
    let outcome = futures_util::FutureExt::catch_unwind(started).await;
    let panic = outcome.expect_err("startup fails");
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("redis://127.0.0.1:1"), "{text}");
    let missing = app_on(&[], "sqlite::memory:", "[messaging]\nbroker = \"nats\"").await;
    assert!(missing.unwrap_err().to_string().contains("messaging.broker_url"));
}

#[tokio::test]
async fn edits_deletes_and_presence_go_over_the_socket_with_the_rest_api_rights() {
    let served = serve("").await;
    let group = group(&served.engine(), &["2"]).await;
    let mut ada = served.connect("user:1").await;
    let mut bob = served.connect("user:2").await;
    send(&mut bob, json!({"type": "subscribe", "conversation": group})).await;
    assert_eq!(next(&mut bob).await["type"], "subscribed");
    send(&mut ada, json!({"type": "send", "ref": 1, "conversation": group, "body": "helo"})).await;
    assert_eq!(next(&mut ada).await["seq"], 1);
    assert_eq!(next(&mut bob).await["message"]["body"], "helo");

    // Bob may not edit Ada's message; Ada may.
    send(&mut bob, json!({"type": "edit", "ref": 2, "conversation": group, "seq": 1, "body": "x"}))
        .await;
    assert_eq!(next(&mut bob).await["code"], "forbidden");
    send(
        &mut ada,
        json!({"type": "edit", "ref": 3, "conversation": group, "seq": 1, "body": "hello"}),
    )
    .await;
    let ack = next(&mut ada).await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_i64(), ack["seq"].as_i64()),
        (Some("ack"), Some(3), Some(1))
    );
    let edit = next(&mut bob).await;
    assert_eq!(
        (edit["type"].as_str(), edit["message"]["body"].as_str()),
        (Some("edit"), Some("hello"))
    );
    send(&mut ada, json!({"type": "delete", "ref": 4, "conversation": group, "seq": 1})).await;
    assert_eq!(next(&mut ada).await["type"], "ack");
    let delete = next(&mut bob).await;
    assert_eq!(
        (delete["type"].as_str(), delete["message"]["deleted"].as_bool()),
        (Some("delete"), Some(true))
    );

    send(&mut bob, json!({"type": "presence", "ref": 5, "users": ["1", "3"]})).await;
    let presence = next(&mut bob).await;
    assert_eq!(presence["users"][0]["user"], "1");
    assert_eq!(presence["users"][0]["online"], true);
    assert_eq!(presence["users"][0]["devices"], 1);
    assert_eq!(presence["users"][1]["online"], false);
    send(&mut bob, json!({"type": "presence"})).await;
    let online = next(&mut bob).await;
    let online: Vec<&str> =
        online["users"].as_array().unwrap().iter().map(|u| u["user"].as_str().unwrap()).collect();
    assert_eq!(online, ["1", "2"]);
    let many: Vec<String> = (0..101).map(|n| n.to_string()).collect();
    send(&mut bob, json!({"type": "presence", "ref": 6, "users": many})).await;
    assert_eq!(next(&mut bob).await["code"], "invalid_input");
}

#[tokio::test]
async fn resumes_read_the_recent_window_or_the_store_and_see_edits_either_way() {
    let served = serve("[messaging.gateway]\nresume_window = 8").await;
    let engine = served.engine();
    let group = group(&engine, &["2"]).await;
    for n in 1..=30 {
        engine.send("1", group, format!("m{n}").as_str()).await.unwrap();
    }
    let ada = xcore_messaging::Actor::user("1");
    engine.edit_message(&ada, group, 28, "edited").await.unwrap();
    engine.send("1", group, "m31").await.unwrap();
    for after in [26, 2] {
        let mut bob = served.connect("user:2").await;
        send(&mut bob, json!({"type": "subscribe", "conversation": group, "after": after})).await;
        let mut bodies = Vec::new();
        loop {
            let frame = next(&mut bob).await;
            if frame["type"] == "subscribed" {
                assert_eq!(frame["last_seq"], 31);
                break;
            }
            bodies.push(frame["message"]["body"].as_str().unwrap().to_owned());
        }
        let expected: Vec<String> = (after + 1..=31)
            .map(|n| if n == 28 { "edited".to_owned() } else { format!("m{n}") })
            .collect();
        assert_eq!(bodies, expected, "resumed after {after}");
    }
}

#[tokio::test]
async fn groups_directs_and_profiles_are_managed_over_the_socket_too() {
    let served = serve("").await;
    let mut ada = served.connect("user:1").await;
    let mut bob = served.connect("user:2").await;
    send(&mut ada, json!({"type": "group_create", "ref": 1, "name": "tea", "members": ["2"]}))
        .await;
    let created = next(&mut ada).await;
    assert_eq!(
        (created["type"].as_str(), created["ref"].as_i64()),
        (Some("conversation"), Some(1))
    );
    let group = created["conversation"]["id"].as_i64().unwrap();
    send(&mut bob, json!({"type": "group_rename", "ref": 2, "conversation": group, "name": "x"}))
        .await;
    assert_eq!(next(&mut bob).await["code"], "forbidden", "a member does not rename");
    send(
        &mut ada,
        json!({"type": "member_role", "conversation": group, "user": "2", "role": "admin"}),
    )
    .await;
    assert_eq!(next(&mut ada).await["member"]["role"], "admin");
    send(&mut bob, json!({"type": "group_rename", "conversation": group, "name": "coffee"})).await;
    assert_eq!(next(&mut bob).await["conversation"]["name"], "coffee");
    send(&mut bob, json!({"type": "members", "conversation": group})).await;
    let members = next(&mut bob).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
    send(&mut bob, json!({"type": "conversations"})).await;
    let listed = next(&mut bob).await;
    assert!(
        listed["conversations"].as_array().unwrap().iter().any(|c| c["id"] == group),
        "{listed}"
    );
    send(&mut bob, json!({"type": "direct", "user": "1"})).await;
    assert_eq!(next(&mut bob).await["conversation"]["kind"], "direct");
    send(&mut bob, json!({"type": "leave", "ref": 3, "conversation": group})).await;
    assert_eq!(next(&mut bob).await, json!({"type": "done", "ref": 3}));
    send(&mut bob, json!({"type": "members", "conversation": group})).await;
    assert_eq!(next(&mut bob).await["code"], "conversation_not_found");
    send(&mut ada, json!({"type": "profile", "username": "Ada", "metadata": {"lang": "fr"}})).await;
    let profile = next(&mut ada).await;
    assert_eq!(
        (profile["user"]["username"].as_str(), profile["presence"]["online"].as_bool()),
        (Some("Ada"), Some(true))
    );
    send(&mut ada, json!({"type": "profile", "metadata": [1]})).await;
    assert_eq!(next(&mut ada).await["code"], "invalid_input");
    send(&mut ada, json!({"type": "group_delete", "conversation": group})).await;
    assert_eq!(next(&mut ada).await["type"], "done");
}
