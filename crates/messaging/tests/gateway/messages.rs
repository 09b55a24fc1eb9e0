//! Sending, subscribing and resuming, and everything the REST API does, over sockets.

use super::*;

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
