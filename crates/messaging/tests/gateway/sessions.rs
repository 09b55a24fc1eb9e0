//! Authentication, limits, bad input, slow consumers and shutdown.

use super::*;

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
