//! Numbering under concurrency, history, edits, deletes and limits.

use super::*;

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

on_both!(changes_carry_the_version_they_replaced, changes);

/// Edit and delete events carry exactly the version each change replaced, even when
/// changes race: concurrent edits chain (each `previous` is another's result), and
/// concurrent deletions of one message fire one event.
async fn changes(engine: Engine) {
    users(&engine, &["owner", "ada"]).await;
    let group = engine.create_group("owner", "tea", &[id("ada")]).await.unwrap().id;
    let seen = record(&engine, &[EventKind::MessageEdited, EventKind::MessageDeleted]);
    let sent = engine.send("ada", group, "v0").await.unwrap();
    let edits = (1..=8).map(|n| {
        let engine = engine.clone();
        let actor = Actor::user(if n % 2 == 0 { "ada" } else { "owner" });
        tokio::spawn(async move {
            engine.edit_message(&actor, group, sent.seq, format!("v{n}").as_str()).await
        })
    });
    for edit in edits.collect::<Vec<_>>() {
        edit.await.unwrap().unwrap();
    }
    let deletes: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine.delete_message(&Actor::user("ada"), group, sent.seq).await
            })
        })
        .collect();
    for delete in deletes {
        assert!(delete.await.unwrap().unwrap().deleted);
    }
    wait_for(&seen, 9).await;
    // A moment more for a second deletion event, were there one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 9, "8 edits and 1 deletion: {events:?}");
    // The edits form one chain from `v0`: every body replaced exactly once.
    let mut replaced = BTreeSet::new();
    let mut results = BTreeSet::new();
    let mut deleted_previous = None;
    for event in &events {
        match event {
            Event::MessageEdited { message, previous, .. } => {
                assert!(replaced.insert(previous.body.clone()), "{} replaced twice", previous.body);
                results.insert(message.body.clone());
            }
            Event::MessageDeleted { message, previous, .. } => {
                assert!(message.deleted && message.body.is_empty());
                deleted_previous = Some(previous.body.clone());
            }
            other => panic!("{other:?}"),
        }
    }
    let last = deleted_previous.unwrap();
    assert!(replaced.contains("v0"));
    // Every result but the last was replaced by the next edit; the last was deleted.
    results.remove(&last);
    replaced.remove("v0");
    assert_eq!(results, replaced);
}
