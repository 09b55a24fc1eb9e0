//! Presence leases, and two engines (two nodes) on one database.

use super::*;

#[tokio::test]
async fn presence_leases_expire_into_on_disconnect() {
    let config = MessagingConfig { presence_ttl_secs: 1, ..MessagingConfig::default() };
    let db = Database::new(&DatabaseConfig {
        url: "sqlite::memory:".into(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    let engine = Engine::new(db, config);
    engine.migrate().await.unwrap();
    users(&engine, &["ada"]).await;
    let seen = record(&engine, &[EventKind::Connect, EventKind::Disconnect]);
    assert!(engine.renew_presence(&id("ada")).await.unwrap().online);
    assert!(engine.online_users().contains(&id("ada")));
    let events = wait_for(&seen, 2).await;
    assert!(matches!(events[0], Event::Connect { came_online: true, .. }), "{events:?}");
    assert!(matches!(events[1], Event::Disconnect { went_offline: true, .. }), "{events:?}");
    assert!(!engine.presence(&id("ada")).online);
}

/// Two nodes on one database: each engine has its own committer and writers; between
/// them, 4 senders × 50 messages into one group still number 1..=200 exactly once.
async fn two_nodes(postgres: bool) {
    let Some((url, _dir)) = fresh_url(postgres).await else { return };
    let node = || {
        let db = Database::new(&DatabaseConfig { url: url.clone(), ..DatabaseConfig::default() });
        Engine::new(db.unwrap(), MessagingConfig::default())
    };
    let (first, second) = (node(), node());
    first.migrate().await.unwrap();
    users(&first, &["a", "b", "c", "d"]).await;
    let group = first.create_group("a", "shared", &[id("b"), id("c"), id("d")]).await.unwrap().id;
    let mut tasks = Vec::new();
    for (n, user) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let engine = if n % 2 == 0 { first.clone() } else { second.clone() };
        tasks.push(tokio::spawn(async move {
            for m in 0..50 {
                engine.send(user, group, format!("{user}{m}")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = second
            .history(&Actor::user("a"), group, Page::After { seq: after, limit: 200 })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        seen.extend(page.iter().map(|message| message.seq));
    }
    assert_eq!(seen, (1..=200).collect::<BTreeSet<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_numbering_on_sqlite() {
    two_nodes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_numbering_on_postgres() {
    two_nodes(true).await;
}

/// What other nodes say of their users, as a fixed list.
struct Elsewhere(Vec<(UserId, u32)>);

impl xcore_messaging::RemotePresence for Elsewhere {
    fn devices(&self, user: &UserId) -> Option<u32> {
        self.0.iter().find(|(id, _)| id == user).map(|(_, devices)| *devices)
    }

    fn online(&self) -> Vec<UserId> {
        self.0.iter().map(|(id, _)| id.clone()).collect()
    }
}

#[tokio::test]
async fn presence_counts_the_devices_other_nodes_report() {
    let engine = Engine::in_memory().await.unwrap();
    users(&engine, &["ada", "bob", "eve"]).await;
    engine.connect_user("ada", "ADA", json!({})).await.unwrap();
    engine.set_remote_presence(Arc::new(Elsewhere(vec![(id("ada"), 2), (id("bob"), 1)])));
    let ada = engine.presence(&id("ada"));
    assert!(ada.online && ada.devices == 3, "one here, two elsewhere: {ada:?}");
    assert!(engine.presence(&id("bob")).online, "online on another node only");
    assert!(!engine.presence(&id("eve")).online);
    assert_eq!(engine.online_users(), [id("ada"), id("bob")], "sorted, each once");
    assert_eq!(engine.local_presence(), [(id("ada"), 1)], "what this node tells the others");
}
