//! Two nodes relaying through Redis and NATS.

use super::*;

/// Two nodes on one PostgreSQL database, relaying through `broker` at `url`.
pub(super) async fn two_nodes(broker: &str, url: &str) -> Option<(Served, Served)> {
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
