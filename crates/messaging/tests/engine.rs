//! The engine through its public API, on SQLite and, when `XCORE_TEST_DATABASE_URL` is
//! set, on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use xcore_db::{Database, DatabaseConfig};
use xcore_messaging::{
    Actor, ConversationKind, Decision, Engine, Error, Event, EventKind, MessagingConfig, Page,
    Refusal, Role, UserId,
};

/// An engine on a fresh database: SQLite in a temporary file (so the pool has several
/// connections, as in the server), or PostgreSQL.
async fn engine_on(
    postgres: bool,
    config: MessagingConfig,
) -> Option<(Engine, Option<tempfile::TempDir>)> {
    let (url, dir) = fresh_url(postgres).await?;
    let db = Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap();
    let engine = Engine::new(db, config);
    engine.migrate().await.unwrap();
    Some((engine, dir))
}

/// A fresh database's URL (and the directory holding it, for SQLite).
async fn fresh_url(postgres: bool) -> Option<(String, Option<tempfile::TempDir>)> {
    if postgres {
        return Some((xcore_db::testing::fresh_postgres_url("messaging").await?, None));
    }
    let dir = tempfile::tempdir().unwrap();
    Some((format!("sqlite://{}", dir.path().join("chat.db").display()), Some(dir)))
}

/// Runs `check` on SQLite, then on PostgreSQL when it is configured.
macro_rules! on_both {
    ($name:ident, $check:ident) => {
        on_both!($name, $check, MessagingConfig::default());
    };
    ($name:ident, $check:ident, $config:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (engine, _dir) = engine_on(false, $config).await.unwrap();
                $check(engine).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some((engine, _)) = engine_on(true, $config).await else { return };
                $check(engine).await;
            }
        }
    };
}

async fn users(engine: &Engine, ids: &[&str]) {
    for id in ids {
        engine.register_user(*id, &id.to_uppercase(), json!({"lang": "fr"})).await.unwrap();
    }
}

fn id(text: &str) -> UserId {
    UserId::from(text)
}

/// Collects the events of `kinds` as they are notified.
fn record(engine: &Engine, kinds: &[EventKind]) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    for &kind in kinds {
        let seen = Arc::clone(&seen);
        engine.on(kind, move |event, _| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push((*event).clone());
                Ok(())
            }
        });
    }
    seen
}

/// Waits until `seen` holds `count` events (hooks run on their own tasks).
async fn wait_for(seen: &Arc<Mutex<Vec<Event>>>, count: usize) -> Vec<Event> {
    for _ in 0..500 {
        if seen.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.lock().unwrap().clone()
}

on_both!(the_original_calls_keep_their_meaning, original_calls);

async fn original_calls(engine: Engine) {
    let seen = record(&engine, &[EventKind::Connect, EventKind::Message, EventKind::Disconnect]);
    let ada = engine.register_user("ada", "Ada", json!({"theme": "dark"})).await.unwrap();
    assert_eq!((ada.id.as_str(), ada.username.as_str()), ("ada", "Ada"));
    assert!(matches!(
        engine.register_user("ada", "Other", json!({})).await,
        Err(Error::UserExists(user)) if user == id("ada")
    ));
    assert!(matches!(
        engine.register_user("eve", "Eve", json!([1])).await,
        Err(Error::Invalid { field: "metadata", .. })
    ));

    // Not connected: nothing is sent.
    assert!(matches!(engine.send_message("ada", "hello").await, Err(Error::Offline(_))));
    assert!(matches!(engine.send_message("nobody", "hello").await, Err(Error::UnknownUser(_))));

    // `connect_user` creates an unknown user and keeps a known one's profile.
    let bob = engine.connect_user("bob", "Bob", json!({})).await.unwrap();
    assert_eq!(bob.username, "Bob");
    let ada_again = engine.connect_user("ada", "Renamed", json!({})).await.unwrap();
    assert_eq!(ada_again.username, "Ada");
    assert!(engine.presence(&id("ada")).online);
    assert_eq!(engine.online_users(), [id("ada"), id("bob")]);

    let first = engine.send_message("ada", "hello").await.unwrap();
    let second = engine.send_message("bob", "hi ada").await.unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.conversation_id, second.conversation_id);
    assert!(second.id > first.id);

    let presence = engine.disconnect_user("ada").await.unwrap();
    assert!(!presence.online && presence.last_seen.is_some());
    assert!(matches!(engine.disconnect_user("ada").await, Err(Error::UnknownUser(_))));

    let events = wait_for(&seen, 5).await;
    let kinds: Vec<_> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds.iter().filter(|kind| **kind == EventKind::Connect).count(), 2, "{events:?}");
    assert!(events.iter().any(|event| matches!(
        event,
        Event::Message { message, kind: ConversationKind::Lobby } if message.body == "hi ada"
    )));
    assert!(events.iter().any(|event| matches!(
        event,
        Event::Disconnect { user, went_offline: true, .. } if *user == id("ada")
    )));
    // The stored profile remembers when the user was last seen.
    assert!(engine.user(&id("ada")).await.unwrap().last_seen.is_some());
}

on_both!(groups_are_managed_by_their_owners_and_admins, group_roles);

async fn group_roles(engine: Engine) {
    users(&engine, &["owner", "admin", "member", "outsider", "late"]).await;
    let (owner, admin, member, outsider, late) =
        (id("owner"), id("admin"), id("member"), id("outsider"), id("late"));
    let group =
        engine.create_group("owner", "tea", &[admin.clone(), member.clone()]).await.unwrap();
    assert_eq!((group.kind, group.name.as_deref()), (ConversationKind::Group, Some("tea")));
    engine.set_role(&owner, group.id, &admin, Role::Admin).await.unwrap();

    // A non-member cannot tell the group exists.
    assert!(matches!(
        engine.send(&outsider, group.id, "hi").await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.members(&outsider, group.id).await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.rename_group(&outsider, group.id, "x").await,
        Err(Error::UnknownConversation(_))
    ));
    // A member without the role is told so.
    assert!(matches!(engine.rename_group(&member, group.id, "x").await, Err(Error::Forbidden(_))));
    assert!(matches!(
        engine.add_member(&member, group.id, &late, Role::Member).await,
        Err(Error::Forbidden(_))
    ));
    // Admins manage members, not admins or owners.
    assert!(matches!(
        engine.add_member(&admin, group.id, &late, Role::Admin).await,
        Err(Error::Forbidden(_))
    ));
    engine.add_member(&admin, group.id, &late, Role::Member).await.unwrap();
    assert!(matches!(
        engine.add_member(&admin, group.id, &late, Role::Member).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        engine.remove_member(&admin, group.id, &owner).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        engine.set_role(&admin, group.id, &member, Role::Admin).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        engine.add_member(&owner, group.id, &id("ghost"), Role::Member).await,
        Err(Error::UnknownUser(_))
    ));
    let renamed = engine.rename_group(&admin, group.id, "coffee").await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("coffee"));

    let members = engine.members(&member, group.id).await.unwrap();
    let roles: Vec<_> = members.iter().map(|m| (m.user_id.as_str(), m.role)).collect();
    assert_eq!(
        roles,
        [
            ("owner", Role::Owner),
            ("admin", Role::Admin),
            ("late", Role::Member),
            ("member", Role::Member)
        ]
    );

    // The last owner stays.
    assert!(matches!(engine.leave_group(&owner, group.id).await, Err(Error::Conflict(_))));
    assert!(matches!(
        engine.set_role(&owner, group.id, &owner, Role::Member).await,
        Err(Error::Conflict(_))
    ));
    engine.set_role(&owner, group.id, &admin, Role::Owner).await.unwrap();
    engine.leave_group(&owner, group.id).await.unwrap();
    assert!(matches!(engine.members(&owner, group.id).await, Err(Error::UnknownConversation(_))));

    // A removed member can no longer write, even just after a successful send.
    engine.send(&late, group.id, "before").await.unwrap();
    engine.remove_member(&admin, group.id, &late).await.unwrap();
    assert!(matches!(
        engine.send(&late, group.id, "after").await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.history(&Actor::user(&late), group.id, Page::Latest { limit: 10 }).await,
        Err(Error::UnknownConversation(_))
    ));

    assert!(matches!(engine.delete_group(&member, group.id).await, Err(Error::Forbidden(_))));
    engine.delete_group(&admin, group.id).await.unwrap();
    assert!(matches!(
        engine.conversation(&admin, group.id).await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.send(&member, group.id, "gone").await,
        Err(Error::UnknownConversation(_))
    ));
}

on_both!(direct_conversations_are_one_per_pair, direct);

async fn direct(engine: Engine) {
    users(&engine, &["ada", "bob", "eve"]).await;
    let (ada, bob, eve) = (id("ada"), id("bob"), id("eve"));
    let one = engine.direct(&ada, &bob).await.unwrap();
    let same = engine.direct(&bob, &ada).await.unwrap();
    assert_eq!((one.id, one.kind), (same.id, ConversationKind::Direct));
    // With oneself: notes to self, one member.
    let notes = engine.direct(&ada, &ada).await.unwrap();
    assert_ne!(notes.id, one.id);
    assert_eq!(engine.members(&ada, notes.id).await.unwrap().len(), 1);
    assert!(matches!(engine.direct(&ada, &id("ghost")).await, Err(Error::UnknownUser(_))));
    engine.send(&bob, one.id, "psst").await.unwrap();
    assert!(matches!(
        engine.send(&eve, one.id, "me too").await,
        Err(Error::UnknownConversation(_))
    ));
    assert!(matches!(
        engine.add_member(&ada, one.id, &eve, Role::Member).await,
        Err(Error::Forbidden(_))
    ));

    let summaries = engine.conversations(&ada).await.unwrap();
    let direct = summaries.iter().find(|s| s.conversation.id == one.id).unwrap();
    assert_eq!((direct.unread, direct.peer.as_ref()), (1, Some(&bob)));
    assert!(summaries.iter().any(|s| s.conversation.kind == ConversationKind::Lobby));
}

on_both!(concurrent_senders_get_every_number_once, concurrent);
on_both!(
    concurrent_senders_without_group_commit_too,
    concurrent,
    MessagingConfig { group_commit: false, ..MessagingConfig::default() }
);

/// 20 senders × 25 messages into one group, and as many into another: each conversation
/// numbers its messages 1..=500 with no gap and no duplicate, each sender's in the order
/// sent.
async fn concurrent(engine: Engine) {
    let senders: Vec<String> = (0..20).map(|n| format!("user{n}")).collect();
    let names: Vec<&str> = senders.iter().map(String::as_str).collect();
    users(&engine, &names).await;
    let members: Vec<UserId> = senders.iter().map(UserId::from).collect();
    let groups = [
        engine.create_group("user0", "one", &members).await.unwrap().id,
        engine.create_group("user0", "two", &members).await.unwrap().id,
    ];
    let mut tasks = Vec::new();
    for sender in senders.clone() {
        for group in groups {
            let engine = engine.clone();
            let sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..25 {
                    let message =
                        engine.send(sender.as_str(), group, format!("{sender} {n}")).await.unwrap();
                    seqs.push(message.seq);
                }
                seqs
            }));
        }
    }
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    }
    for group in groups {
        let mut seen = BTreeSet::new();
        let mut after = 0;
        loop {
            let page = engine
                .history(&Actor::user("user1"), group, Page::After { seq: after, limit: 200 })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            for message in page {
                assert!(seen.insert(message.seq), "duplicate {}", message.seq);
            }
        }
        assert_eq!(seen, (1..=500).collect::<BTreeSet<i64>>());
        assert_eq!(engine.conversation(&id("user3"), group).await.unwrap().last_seq, 500);
    }
}

on_both!(history_pages_read_markers_and_unread_counts, history);

async fn history(engine: Engine) {
    users(&engine, &["ada", "bob"]).await;
    let (ada, bob) = (id("ada"), id("bob"));
    let group = engine.create_group(&ada, "tea", std::slice::from_ref(&bob)).await.unwrap().id;
    for n in 1..=30 {
        let sender = if n % 3 == 0 { &ada } else { &bob };
        engine.send(sender, group, format!("m{n}")).await.unwrap();
    }
    let reader = Actor::user(&ada);
    let seqs = |page: Vec<xcore_messaging::Message>| page.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(engine.history(&reader, group, Page::Latest { limit: 3 }).await.unwrap()),
        [28, 29, 30]
    );
    assert_eq!(
        seqs(engine.history(&reader, group, Page::Before { seq: 5, limit: 10 }).await.unwrap()),
        [1, 2, 3, 4]
    );
    assert_eq!(
        seqs(engine.history(&reader, group, Page::After { seq: 27, limit: 10 }).await.unwrap()),
        [28, 29, 30]
    );
    assert_eq!(
        seqs(engine.history(&reader, group, Page::After { seq: 30, limit: 10 }).await.unwrap()),
        Vec::<i64>::new()
    );
    assert!(matches!(
        engine.history(&reader, group, Page::Latest { limit: 0 }).await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        engine.history(&reader, group, Page::Latest { limit: 201 }).await,
        Err(Error::Invalid { .. })
    ));

    let unread = |engine: Engine, user: UserId| async move {
        let summaries = engine.conversations(&user).await.unwrap();
        summaries.into_iter().find(|s| s.conversation.id == group).unwrap().unread
    };
    // Ada sent 10 of the 30: 20 unread; Bob sent 20: 10 unread.
    assert_eq!(unread(engine.clone(), ada.clone()).await, 20);
    assert_eq!(unread(engine.clone(), bob.clone()).await, 10);
    assert_eq!(engine.mark_read(&ada, group, 15).await.unwrap(), 15);
    assert_eq!(unread(engine.clone(), ada.clone()).await, 10);
    // Markers never move back; a marker past the end is refused.
    assert_eq!(engine.mark_read(&ada, group, 3).await.unwrap(), 15);
    assert!(matches!(engine.mark_read(&ada, group, -1).await, Err(Error::Invalid { .. })));
    // Deleted messages are not unread.
    engine.delete_message(&Actor::user(&bob), group, 29).await.unwrap();
    assert_eq!(unread(engine.clone(), ada.clone()).await, 9);
    // Past the end counts as the end.
    assert_eq!(engine.mark_read(&ada, group, 99).await.unwrap(), 30);
    assert_eq!(unread(engine.clone(), ada.clone()).await, 0);
    let between = |after, before, limit| Page::Between { after, before, limit };
    assert_eq!(
        seqs(engine.history(&reader, group, between(10, 14, 10)).await.unwrap()),
        [11, 12, 13]
    );
    assert_eq!(seqs(engine.history(&reader, group, between(10, 20, 2)).await.unwrap()), [11, 12]);
}

on_both!(edits_and_deletes_by_sender_admin_or_moderator, edits);

async fn edits(engine: Engine) {
    users(&engine, &["owner", "ada", "bob", "mod"]).await;
    let group = engine.create_group("owner", "tea", &[id("ada"), id("bob")]).await.unwrap().id;
    let seen = record(&engine, &[EventKind::MessageEdited, EventKind::MessageDeleted]);
    let message = engine.send("ada", group, "helo").await.unwrap();
    assert!(matches!(
        engine.edit_message(&Actor::user("bob"), group, message.seq, "hacked").await,
        Err(Error::Forbidden(_))
    ));
    let edited =
        engine.edit_message(&Actor::user("ada"), group, message.seq, "hello").await.unwrap();
    assert_eq!((edited.body.as_str(), edited.seq, edited.id), ("hello", message.seq, message.id));
    assert!(edited.edited_at.is_some());
    // The group's owner and a moderator (not even a member) may too.
    engine.edit_message(&Actor::user("owner"), group, message.seq, "hello!").await.unwrap();
    assert!(matches!(
        engine.edit_message(&Actor::user("mod"), group, message.seq, "x").await,
        Err(Error::UnknownConversation(_))
    ));
    let deleted =
        engine.delete_message(&Actor::moderator("mod"), group, message.seq).await.unwrap();
    assert!(deleted.deleted && deleted.body.is_empty());
    assert!(matches!(
        engine.edit_message(&Actor::user("ada"), group, message.seq, "back").await,
        Err(Error::Conflict(_))
    ));
    // Deleting again changes nothing; history keeps the number.
    assert!(engine.delete_message(&Actor::user("ada"), group, message.seq).await.unwrap().deleted);
    let page =
        engine.history(&Actor::user("bob"), group, Page::Latest { limit: 10 }).await.unwrap();
    assert_eq!((page.len(), page[0].deleted), (1, true));
    assert!(matches!(
        engine.delete_message(&Actor::user("ada"), group, 99).await,
        Err(Error::UnknownMessage { seq: 99, .. })
    ));
    let events = wait_for(&seen, 3).await;
    assert_eq!(events.len(), 3, "two edits and one delete: {events:?}");
}

on_both!(messages_are_checked_against_the_limits, limits);

async fn limits(engine: Engine) {
    users(&engine, &["ada"]).await;
    let lobby = engine.conversations(&id("ada")).await.unwrap()[0].conversation.id;
    let refused = |result: Result<xcore_messaging::Message, Error>, expected: &str| match result {
        Err(Error::Invalid { field, .. }) => assert_eq!(field, expected),
        other => panic!("{other:?}"),
    };
    // 4,000 characters fit, however many bytes they take; one more does not.
    engine.send("ada", lobby, "é".repeat(4000)).await.unwrap();
    refused(engine.send("ada", lobby, "x".repeat(4001)).await, "body");
    refused(engine.send("ada", lobby, "   ").await, "body");
    let draft = |body: &str, attachment| xcore_messaging::Draft { body: body.into(), attachment };
    let sent = engine.send("ada", lobby, draft("", Some(json!({"name": "a.png"})))).await.unwrap();
    assert_eq!(sent.attachment, Some(json!({"name": "a.png"})));
    refused(engine.send("ada", lobby, draft("x", Some(json!([1, 2])))).await, "attachment");
    let huge = json!({"name": "y".repeat(5000)});
    refused(engine.send("ada", lobby, draft("x", Some(huge))).await, "attachment");
    // Nothing refused was stored.
    assert_eq!(engine.conversation(&id("ada"), lobby).await.unwrap().last_seq, 2);
}

#[tokio::test]
async fn before_hooks_run_in_order_and_may_rewrite_or_refuse() {
    let engine = Engine::in_memory().await.unwrap();
    users(&engine, &["ada"]).await;
    let lobby = engine.conversations(&id("ada")).await.unwrap()[0].conversation.id;
    // Registered out of order: the order runs `upper` (1) before `exclaim` (2).
    engine.before_message(2, "exclaim", |outgoing, _| async move {
        let mut draft = outgoing.draft;
        draft.body.push('!');
        Ok(Decision::Accept(draft))
    });
    engine.before_message(1, "upper", |outgoing, _| async move {
        if outgoing.draft.body.contains("spam") {
            return Ok(Decision::Refuse(
                Refusal::new("spam", "no spam").retry_after(Duration::from_secs(3)),
            ));
        }
        let mut draft = outgoing.draft;
        draft.body = draft.body.to_uppercase();
        Ok(Decision::Accept(draft))
    });
    assert_eq!(engine.send("ada", lobby, "hi").await.unwrap().body, "HI!");
    match engine.send("ada", lobby, "spam").await {
        Err(Error::Refused(refusal)) => {
            assert_eq!(
                (refusal.code.as_str(), refusal.retry_after),
                ("spam", Some(Duration::from_secs(3)))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.conversation(&id("ada"), lobby).await.unwrap().last_seq, 1);
    // Edits go through the same hooks.
    let edited = engine.edit_message(&Actor::user("ada"), lobby, 1, "bye").await.unwrap();
    assert_eq!(edited.body, "BYE!");
}

#[tokio::test]
async fn failing_hooks_fire_on_error_and_never_break_the_send() {
    let config = MessagingConfig {
        before_hook_timeout_ms: 50,
        hook_timeout_ms: 50,
        ..MessagingConfig::default()
    };
    let db = Database::new(&DatabaseConfig {
        url: "sqlite::memory:".into(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    let engine = Engine::new(db, config);
    engine.migrate().await.unwrap();
    users(&engine, &["ada"]).await;
    let lobby = engine.conversations(&id("ada")).await.unwrap()[0].conversation.id;
    let errors = record(&engine, &[EventKind::Error]);
    engine.before_message(1, "fails", |_, _| async { Err("no database".into()) });
    engine.before_message(2, "panics", |_, _| async { panic!("boom") });
    engine.before_message(3, "sleeps", |outgoing, _| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Decision::Accept(outgoing.draft))
    });
    engine.on(EventKind::Message, |_, _| async { panic!("after boom") });
    let delivered = record(&engine, &[EventKind::Message]);

    let sent = engine.send("ada", lobby, "still here").await.unwrap();
    assert_eq!(sent.body, "still here");
    assert_eq!(wait_for(&delivered, 1).await.len(), 1, "other hooks still run");
    let errors = wait_for(&errors, 4).await;
    let mut failed: Vec<(String, &str)> = errors
        .iter()
        .map(|event| match event {
            Event::Error { hook, during, .. } => (hook.clone(), *during),
            other => panic!("{other:?}"),
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            ("fails".to_owned(), "before_message"),
            ("on_message#1".to_owned(), "on_message"),
            ("panics".to_owned(), "before_message"),
            ("sleeps".to_owned(), "before_message"),
        ]
    );
    let reasons: Vec<String> = errors
        .iter()
        .filter_map(|event| match event {
            Event::Error { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(reasons.iter().any(|r| r.contains("took longer than 50 ms")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("panicked: boom")), "{reasons:?}");
}

#[tokio::test]
async fn a_slow_hook_delays_no_send_and_no_other_hook() {
    let engine = Engine::in_memory().await.unwrap();
    users(&engine, &["ada"]).await;
    let lobby = engine.conversations(&id("ada")).await.unwrap()[0].conversation.id;
    let gate = Arc::new(tokio::sync::Notify::new());
    let waiting = Arc::clone(&gate);
    engine.on(EventKind::Message, move |_, _| {
        let waiting = Arc::clone(&waiting);
        async move {
            waiting.notified().await;
            Ok(())
        }
    });
    let fast = record(&engine, &[EventKind::Message]);
    for n in 0..5 {
        engine.send("ada", lobby, format!("m{n}")).await.unwrap();
    }
    let seen = wait_for(&fast, 5).await;
    let bodies: Vec<_> = seen
        .iter()
        .map(|event| match event {
            Event::Message { message, .. } => message.body.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"], "in order, while the slow hook waits");
    gate.notify_one();
}

#[test]
fn hook_names_are_the_original_ones_and_others_are_refused() {
    for (name, kind) in [
        ("on_connect", EventKind::Connect),
        ("on_disconnect", EventKind::Disconnect),
        ("on_message", EventKind::Message),
        ("on_error", EventKind::Error),
        ("on_member_added", EventKind::MemberAdded),
    ] {
        assert_eq!(name.parse::<EventKind>().unwrap(), kind);
    }
    let error = "on_typo".parse::<EventKind>().unwrap_err();
    assert!(error.to_string().starts_with("no event `on_typo`"), "{error}");
}

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
