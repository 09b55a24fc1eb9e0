//! `before_message` and notification hooks: order, rewrites, refusals, failures.

use super::*;

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
