//! The quotas through the engine: on a bare engine with [`register`], and as the plugin
//! built into an application with the modules it depends on, on SQLite and, when
//! `XCORE_TEST_DATABASE_URL` is set, on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::json;
use xcore_core::{App, AppBuilder, BuildError, Registry};
use xcore_db::{DatabaseConfig, DatabasePlugin};
use xcore_messaging::{
    Actor, ConversationId, Draft, Engine, Error as MessagingError, Event, EventKind,
    MessagingConfig, Refusal,
};

use super::*;

/// Hooks are given all the time they need: these tests are about what the quotas count,
/// and a check cut short lets its message through.
const PATIENT_HOOKS: &str = "[messaging]\nbefore_hook_timeout_ms = 60000\n";

/// The plugin with the modules it depends on, built and started as the server does it,
/// over `database`.
async fn app_on(database: &str, config: &str) -> Result<App, BuildError> {
    xcore_messaging::testing::app_on(&[&Quotas], database, config).await
}

/// The engine of a started application with the plugin configured by `quotas`.
async fn node(database: &str, quotas: &str) -> Engine {
    let config = format!("{PATIENT_HOOKS}[plugins.quotas]\n{quotas}");
    let app = app_on(database, &config).await.unwrap();
    app.extensions.get::<Engine>().unwrap().clone()
}

/// An engine on a private SQLite database with the quota tables, limited by `config`,
/// with users `ids`.
async fn engine(config: &QuotasConfig, ids: &[&str]) -> Engine {
    let engine = Engine::in_memory().await.unwrap();
    engine.database().migrate(&[&MIGRATIONS]).await.unwrap();
    let mut hooks = HookSet::default();
    register(&mut hooks, config);
    engine.install(hooks);
    for id in ids {
        engine.register_user(*id, id, json!({})).await.unwrap();
    }
    engine
}

fn sqlite_file(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("chat.db").display())
}

fn id(text: &str) -> UserId {
    UserId::from(text)
}

async fn lobby(engine: &Engine) -> ConversationId {
    engine.conversations(&id("ada")).await.unwrap()[0].conversation.id
}

fn refusal(sent: xcore_messaging::Result<xcore_messaging::Message>) -> Refusal {
    match sent {
        Err(MessagingError::Refused(refusal)) => refusal,
        other => panic!("refused expected: {other:?}"),
    }
}

/// Waits until `user`'s stored bytes are `expected` (the usage follows committed messages
/// on the hooks' own tasks), then returns them.
async fn stored(engine: &Engine, user: &str, expected: i64) -> i64 {
    for _ in 0..500 {
        let bytes = usage(engine.database(), &id(user)).await.unwrap().stored_bytes;
        if bytes == expected {
            return bytes;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    usage(engine.database(), &id(user)).await.unwrap().stored_bytes
}

/// Collects the `on_error` events of `engine`.
fn record_errors(engine: &Engine) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    engine.on(EventKind::Error, move |event, _| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().unwrap().push((*event).clone());
            Ok(())
        }
    });
    seen
}

fn daily(max: u64) -> QuotasConfig {
    QuotasConfig {
        messages_per_day: Limit::of(max),
        stored_bytes: Limit::off(),
        exempt: vec!["bot".to_owned()],
    }
}

#[tokio::test]
async fn over_the_daily_quota_a_message_waits_for_midnight_and_edits_do_not_count() {
    let engine = engine(&daily(3), &["ada", "bob", "bot"]).await;
    let lobby = lobby(&engine).await;
    engine.send("ada", lobby, "one").await.unwrap();
    engine.send("ada", lobby, "two").await.unwrap();
    for n in 0..5 {
        engine.edit_message(&Actor::user("ada"), lobby, 1, format!("one, {n}")).await.unwrap();
    }
    engine.send("ada", lobby, "three").await.unwrap();

    let before = Utc::now();
    let refused = refusal(engine.send("ada", lobby, "four").await);
    let after = Utc::now();
    assert_eq!(refused.code, DAILY_CODE);
    assert!(refused.message.contains("your 3 messages for today"), "{}", refused.message);
    // The wait ends at the midnight UTC after the refusal, wherever it fell between the two
    // readings of the clock.
    let (day, _) = utc_day(before);
    if utc_day(after).0 == day {
        let midnight = chrono::DateTime::from_timestamp((day + 1) * 86_400, 0).unwrap();
        let wait = chrono::Duration::from_std(refused.retry_after.unwrap()).unwrap();
        assert!(before + wait <= midnight && midnight <= after + wait, "{wait}");
    }
    let used = usage(engine.database(), &id("ada")).await.unwrap();
    assert_eq!(used.messages_today, 3);
    // An edit is still let through; Bob has his own quota; the bot is exempt.
    engine.edit_message(&Actor::user("ada"), lobby, 3, "three, edited").await.unwrap();
    engine.send("bob", lobby, "hi").await.unwrap();
    for n in 0..5 {
        engine.send("bot", lobby, format!("announcement {n}")).await.unwrap();
    }
    assert_eq!(engine.conversation(&id("ada"), lobby).await.unwrap().last_seq, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_two_nodes_never_exceed_the_daily_quota() {
    let dir = tempfile::tempdir().unwrap();
    check_concurrent(&sqlite_file(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_two_nodes_never_exceed_the_daily_quota_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("quotas_race").await else { return };
    check_concurrent(&url).await;
}

/// Twenty messages from one user at once, half through each of two nodes sharing the
/// database, under a quota of ten: exactly ten are stored.
async fn check_concurrent(url: &str) {
    let quotas = "messages_per_day = { max = 10 }";
    let nodes = [node(url, quotas).await, node(url, quotas).await];
    let errors: Vec<_> = nodes.iter().map(record_errors).collect();
    nodes[0].register_user("ada", "Ada", json!({})).await.unwrap();
    let lobby = lobby(&nodes[0]).await;
    let sends: Vec<_> = (0..20)
        .map(|n| {
            let engine = nodes[n % 2].clone();
            tokio::spawn(async move { engine.send("ada", lobby, format!("m{n}")).await })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for send in sends {
        match send.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(MessagingError::Refused(refusal)) if refusal.code == DAILY_CODE => refused += 1,
            Err(other) => panic!("sent or refused for the quota expected: {other}"),
        }
    }
    assert_eq!((accepted, refused), (10, 10));
    assert_eq!(nodes[1].conversation(&id("ada"), lobby).await.unwrap().last_seq, 10);
    assert_eq!(usage(nodes[0].database(), &id("ada")).await.unwrap().messages_today, 10);
    for errors in errors {
        assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock().unwrap());
    }
}

#[tokio::test]
async fn the_storage_quota_counts_sends_edits_and_deletions() {
    let config = QuotasConfig {
        messages_per_day: Limit::off(),
        stored_bytes: Limit::of(20),
        exempt: vec!["bot".to_owned()],
    };
    let engine = engine(&config, &["ada", "bob", "bot"]).await;
    let lobby = lobby(&engine).await;
    engine.send("ada", lobby, "0123456789").await.unwrap();
    assert_eq!(stored(&engine, "ada", 10).await, 10);
    let refused = refusal(engine.send("ada", lobby, "eleven byte").await);
    assert_eq!((refused.code.as_str(), refused.retry_after), (STORAGE_CODE, None));
    assert!(refused.message.contains("your stored messages to 21 bytes"), "{}", refused.message);

    // Up to the quota exactly, with an attachment: 2 bytes of body, 8 of JSON.
    let draft = Draft { body: "é".to_owned(), attachment: Some(json!({"a": 12})) };
    engine.send("ada", lobby, draft).await.unwrap();
    assert_eq!(stored(&engine, "ada", 20).await, 20);
    // An edit that grows a message is refused, whoever makes it; one that shrinks it is
    // not, and frees the difference.
    let grown = refusal(engine.edit_message(&Actor::user("ada"), lobby, 1, "0123456789+").await);
    assert_eq!(grown.code, STORAGE_CODE);
    let moderated =
        refusal(engine.edit_message(&Actor::moderator("bob"), lobby, 1, "0123456789+").await);
    assert!(moderated.message.contains("`ada`'s stored messages"), "{}", moderated.message);
    engine.edit_message(&Actor::user("ada"), lobby, 1, "01234").await.unwrap();
    assert_eq!(stored(&engine, "ada", 15).await, 15);
    engine.edit_message(&Actor::user("ada"), lobby, 1, "0123456789").await.unwrap();
    assert_eq!(stored(&engine, "ada", 20).await, 20);
    // Deleting frees what the message took.
    engine.delete_message(&Actor::user("ada"), lobby, 2).await.unwrap();
    assert_eq!(stored(&engine, "ada", 10).await, 10);
    engine.send("ada", lobby, "0123456789").await.unwrap();
    // Others have their own quota; the exempt bot goes over its own.
    engine.send("bob", lobby, "0123456789").await.unwrap();
    engine.send("bot", lobby, "a".repeat(30)).await.unwrap();
    assert_eq!(stored(&engine, "bot", 30).await, 30);
    assert_eq!(stored(&engine, "ada", 20).await, 20);
    assert_eq!(stored(&engine, "bob", 10).await, 10);
}

#[tokio::test]
async fn usage_is_kept_with_both_quotas_off() {
    let off = QuotasConfig {
        messages_per_day: Limit::off(),
        stored_bytes: Limit::off(),
        exempt: Vec::new(),
    };
    let engine = engine(&off, &["ada"]).await;
    let lobby = lobby(&engine).await;
    for n in 0..12 {
        engine.send("ada", lobby, format!("message {n:02}")).await.unwrap();
    }
    assert_eq!(stored(&engine, "ada", 12 * 10).await, 120);
    assert_eq!(usage(engine.database(), &id("ada")).await.unwrap().messages_today, 0);
}

#[tokio::test]
async fn messages_stored_before_the_plugin_count() {
    let dir = tempfile::tempdir().unwrap();
    check_existing(&sqlite_file(&dir)).await;
}

#[tokio::test]
async fn messages_stored_before_the_plugin_count_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("quotas_existing").await else {
        return;
    };
    check_existing(&url).await;
}

/// Messages sent without the plugin (kept, edited, deleted, with attachments and non-ASCII
/// text) count once it is installed, as a recount from the messages finds them; and the
/// usage kept from then on agrees with a recount.
async fn check_existing(url: &str) {
    let before = Engine::new(
        xcore_db::Database::new(&DatabaseConfig {
            url: url.to_owned(),
            ..DatabaseConfig::default()
        })
        .unwrap(),
        MessagingConfig::default(),
    );
    before.migrate().await.unwrap();
    for user in ["ada", "bob"] {
        before.register_user(user, user, json!({})).await.unwrap();
    }
    let lobby = lobby(&before).await;
    let attached = Draft { body: "Grüß".to_owned(), attachment: Some(json!({"n": "ü"})) };
    before.send("ada", lobby, attached).await.unwrap(); // 6 + 10
    before.send("ada", lobby, "to be deleted").await.unwrap();
    before.send("ada", lobby, "short").await.unwrap();
    before.send("bob", lobby, "bob").await.unwrap();
    before.edit_message(&Actor::user("ada"), lobby, 3, "longer, edited").await.unwrap(); // 14
    before.delete_message(&Actor::user("ada"), lobby, 2).await.unwrap();
    drop(before);

    let engine = node(url, "stored_bytes = { max = 1000 }").await;
    assert_eq!(stored(&engine, "ada", 30).await, 30);
    assert_eq!(stored(&engine, "bob", 3).await, 3);

    let draft = Draft { body: "ça".to_owned(), attachment: Some(json!({"list": [1, 2.5, null]})) };
    engine.send("bob", lobby, draft).await.unwrap(); // 3 + 21
    engine.edit_message(&Actor::user("ada"), lobby, 1, "Grüße").await.unwrap(); // 7
    engine.delete_message(&Actor::user("ada"), lobby, 3).await.unwrap();
    assert_eq!(stored(&engine, "ada", 7).await, 7);
    assert_eq!(stored(&engine, "bob", 27).await, 27);
    recount(engine.database()).await.unwrap();
    for (user, bytes) in [("ada", 7), ("bob", 27)] {
        assert_eq!(usage(engine.database(), &id(user)).await.unwrap().stored_bytes, bytes);
    }
}

#[tokio::test]
async fn the_quotas_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    check_restart(&sqlite_file(&dir)).await;
}

#[tokio::test]
async fn the_quotas_hold_across_a_restart_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("quotas_restart").await else {
        return;
    };
    check_restart(&url).await;
}

async fn check_restart(url: &str) {
    let quotas = "messages_per_day = { max = 2 }\nstored_bytes = { max = 12 }";
    let first = node(url, quotas).await;
    first.register_user("ada", "Ada", json!({})).await.unwrap();
    first.register_user("bob", "Bob", json!({})).await.unwrap();
    let lobby = lobby(&first).await;
    first.send("ada", lobby, "one").await.unwrap();
    first.send("ada", lobby, "two").await.unwrap();
    first.send("bob", lobby, "0123456789").await.unwrap();
    assert_eq!(stored(&first, "bob", 10).await, 10);
    drop(first);

    let second = node(url, quotas).await;
    assert_eq!(refusal(second.send("ada", lobby, "three").await).code, DAILY_CODE);
    assert_eq!(refusal(second.send("bob", lobby, "abc").await).code, STORAGE_CODE);
    second.send("bob", lobby, "ab").await.unwrap();
    let used = usage(second.database(), &id("ada")).await.unwrap();
    assert_eq!(used, Usage { messages_today: 2, stored_bytes: 6 });
}

#[tokio::test]
async fn past_days_are_pruned() {
    let engine = engine(&daily(5), &["ada"]).await;
    let (today, _) = utc_day(Utc::now());
    for (user, day) in [("ada", today - 1), ("bob", today - 30)] {
        assert!(store::reserve(engine.database(), &id(user), day, 5).await.unwrap());
    }
    engine.send("ada", lobby(&engine).await, "hi").await.unwrap();
    for _ in 0..500 {
        let left = store::messages_on(engine.database(), &id("ada"), today - 1).await.unwrap()
            + store::messages_on(engine.database(), &id("bob"), today - 30).await.unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store::messages_on(engine.database(), &id("ada"), today - 1).await.unwrap(), 0);
    assert_eq!(store::messages_on(engine.database(), &id("bob"), today - 30).await.unwrap(), 0);
    assert_eq!(store::messages_on(engine.database(), &id("ada"), today).await.unwrap(), 1);
}

#[tokio::test]
async fn refuses_invalid_config_naming_every_problem() {
    let error = app_on(
        "sqlite::memory:",
        "[plugins.quotas]\nmessages_per_day = { max = 0 }\n\
         stored_bytes = { maximum = 5 }\nexempt = [\"\"]\nexcempt = []",
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        error.to_string(),
        "the application cannot be built (1 problem):\n  - plugin `quotas`: invalid config: \
         `plugins.quotas.excempt`: unknown key `excempt`; expected one of: messages_per_day, \
         stored_bytes, exempt (from TOML source string); `plugins.quotas.stored_bytes.maximum`: \
         unknown key `maximum`; expected one of: enabled, max (from TOML source string); \
         `plugins.quotas.messages_per_day`: `max` must be at least 1 (`enabled = false` turns \
         the quota off) (from TOML source string); `plugins.quotas.stored_bytes`: `max` must \
         be at least 1 (`enabled = false` turns the quota off) (from TOML source string); \
         `plugins.quotas.exempt`: user ids must not be blank (from TOML source string)"
    );
}

#[tokio::test]
async fn needs_the_messaging_module() {
    let toml = "[database]\nurl = \"sqlite::memory:\"";
    let builder = AppBuilder::new(Figment::from(Toml::string(toml)));
    let error = builder.build(&Registry::new(vec![&Quotas, &DatabasePlugin])).err().unwrap();
    assert!(
        error
            .to_string()
            .contains("plugin `quotas` depends on `messaging`, which is not registered"),
        "{error}"
    );
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let config = QuotasConfig::default();
    assert_eq!(config.messages_per_day, Limit::of(10_000));
    assert_eq!(config.stored_bytes, Limit::of(104_857_600));
    assert!(config.exempt.is_empty());
    assert!(xcore_core::config::problems(&config).is_empty());
    assert_eq!(ORDER, -800);
}
