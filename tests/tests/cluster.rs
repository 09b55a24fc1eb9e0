//! Two server processes on one PostgreSQL database, relaying live messages through Redis,
//! then NATS: a member on node B receives what is sent on node A; node B is killed with
//! SIGKILL and started again, and its client resumes with no gap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;
use xcore_tests::ws::{self, Client, TokenIn, next, send};
use xcore_tests::{Server, request_as, sign_in};

const SECRET: &str = "a shared secret of at least thirty-two bytes";

fn connect(server: &Server, token: &str) -> Client {
    ws::connect(server.addr, token, TokenIn::Query)
}

/// Sends `bodies` from `client` to `group`, each acknowledged before the next.
fn say(client: &mut Client, group: i64, bodies: std::ops::RangeInclusive<i64>) {
    for n in bodies {
        send(
            client,
            &json!({"type": "send", "ref": n, "conversation": group, "body": format!("m{n}")}),
        );
        loop {
            let frame = next(client);
            if frame["type"] == "ack" {
                assert_eq!(frame["seq"], n, "{frame}");
                break;
            }
        }
    }
}

/// Reads `count` messages of `group`: their sequence numbers, checking the bodies.
fn heard(client: &mut Client, count: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < count {
        let frame = next(client);
        if frame["type"] == "message" {
            assert_eq!(frame["message"]["body"], format!("m{}", frame["message"]["seq"]));
            seqs.push(frame["message"]["seq"].as_i64().unwrap());
        }
    }
    seqs
}

/// Whether `check` holds within 15 s.
fn wait_until(check: impl Fn() -> bool) -> bool {
    for _ in 0..150 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn cluster(broker: &str, broker_url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(database) = runtime.block_on(xcore_db::testing::fresh_postgres_url("cluster")) else {
        return;
    };
    let channel = format!("xcore.cluster.{}.{broker}", std::process::id());
    let env = [
        ("XCORE_DATABASE__URL", database.as_str()),
        ("XCORE_AUTH__SECRET", SECRET),
        ("XCORE_MESSAGING__BROKER", broker),
        ("XCORE_MESSAGING__BROKER_URL", broker_url),
        ("XCORE_MESSAGING__BROKER_CHANNEL", channel.as_str()),
        // Presence told by a node that stops holds 3 s, not the default 60.
        ("XCORE_MESSAGING__PRESENCE_TTL_SECS", "3"),
    ];
    let a = Server::start(&env);
    let b = Server::start(&env);
    let ada = sign_in(a.addr, "ada@example.com");
    let bob = sign_in(a.addr, "bob@example.com");
    let me = request_as(b.addr, Some(&bob), "GET", "/messaging/me", None).unwrap();
    let bob_id = me.json()["user"]["id"].as_str().unwrap().to_owned();
    let body = json!({"name": "tea", "members": [bob_id]}).to_string();
    let group = request_as(a.addr, Some(&ada), "POST", "/messaging/groups", Some(&body)).unwrap();
    let group = group.json()["id"].as_i64().unwrap();

    let mut on_b = connect(&b, &bob);
    send(&mut on_b, &json!({"type": "subscribe", "conversation": group}));
    assert_eq!(next(&mut on_b)["type"], "subscribed");
    let mut on_a = connect(&a, &ada);
    say(&mut on_a, group, 1..=5);
    assert_eq!(heard(&mut on_b, 5), [1, 2, 3, 4, 5], "sent on A, received on B");

    // Bob is online on B, and A knows it.
    let bob_on_a = format!("/messaging/users/{bob_id}");
    let online = |server: &Server| {
        let profile = request_as(server.addr, Some(&ada), "GET", &bob_on_a, None).unwrap();
        profile.json()["presence"]["online"].as_bool().unwrap()
    };
    assert!(wait_until(|| online(&a)), "bob, connected to B, is online for A");

    // Node B dies without a word; A goes on taking messages, and shows Bob offline once
    // B's last word about him has expired: no ghost.
    drop(on_b);
    drop(b);
    assert!(wait_until(|| !online(&a)), "bob is offline for A after B died");
    say(&mut on_a, group, 6..=10);

    let b = Server::start(&env);
    let mut on_b = connect(&b, &bob);
    send(&mut on_b, &json!({"type": "subscribe", "conversation": group, "after": 5}));
    assert_eq!(heard(&mut on_b, 5), [6, 7, 8, 9, 10], "resumed with no gap");
    assert_eq!(
        next(&mut on_b),
        json!({"type": "subscribed", "conversation": group, "last_seq": 10})
    );
    say(&mut on_a, group, 11..=12);
    assert_eq!(heard(&mut on_b, 2), [11, 12], "live again, across nodes");
}

#[test]
fn two_nodes_relay_through_redis_and_a_killed_node_resumes() {
    let Ok(url) = std::env::var("XCORE_TEST_REDIS_URL") else {
        eprintln!("skipped: XCORE_TEST_REDIS_URL is not set");
        return;
    };
    cluster("redis", &url);
}

#[test]
fn two_nodes_relay_through_nats_and_a_killed_node_resumes() {
    let Ok(url) = std::env::var("XCORE_TEST_NATS_URL") else {
        eprintln!("skipped: XCORE_TEST_NATS_URL is not set");
        return;
    };
    cluster("nats", &url);
}
