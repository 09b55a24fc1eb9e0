//! The plugin built into an application with the modules it depends on, on SQLite and,
//! when `XCORE_TEST_DATABASE_URL` is set, on PostgreSQL; and its hook on a bare engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::json;
use xcore_core::{App, AppBuilder, BuildError, Registry};
use xcore_db::{Database, DatabaseConfig, DatabasePlugin};
use xcore_messaging::{Actor, Decision, Engine, Event, EventKind, Page, Refusal, UserId};

use super::*;

/// The plugin with the modules it depends on, built and started as the server does it,
/// over `database`.
async fn app_on(database: &str, config: &str) -> Result<App, BuildError> {
    xcore_messaging::testing::app_on(&[&Welcome], database, config).await
}

fn engine(app: &App) -> Engine {
    app.extensions.get::<Engine>().unwrap().clone()
}

fn sqlite_file(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("chat.db").display())
}

fn id(text: &str) -> UserId {
    UserId::from(text)
}

/// The bodies of the messages `sender` sent `user` in their direct conversation.
async fn received(engine: &Engine, sender: &str, user: &str) -> Vec<String> {
    if engine.user(&id(sender)).await.is_err() {
        return Vec::new();
    }
    let direct = engine.direct(&id(sender), &id(user)).await.unwrap();
    let page = Page::Latest { limit: 100 };
    let messages = engine.history(&Actor::user(user), direct.id, page).await.unwrap();
    messages.into_iter().filter(|m| m.sender_id == id(sender)).map(|m| m.body).collect()
}

/// Waits until `user` has received `count` greetings from `sender` (hooks run on their
/// own tasks), then returns them.
async fn greetings(engine: &Engine, sender: &str, user: &str, count: usize) -> Vec<String> {
    for _ in 0..500 {
        let bodies = received(engine, sender, user).await;
        if bodies.len() >= count {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    received(engine, sender, user).await
}

/// Connects a user then disconnects them: one coming online.
async fn visit(engine: &Engine, user: &str) {
    engine.connect_user(user, &user.to_uppercase(), json!({})).await.unwrap();
    engine.disconnect_user(user).await.unwrap();
}

#[tokio::test]
async fn a_newcomer_is_greeted_once_across_reconnections_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    check_once(&sqlite_file(&dir)).await;
}

#[tokio::test]
async fn a_newcomer_is_greeted_once_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("welcome").await else { return };
    check_once(&url).await;
}

async fn check_once(url: &str) {
    let first = engine(&app_on(url, "").await.unwrap());
    visit(&first, "ada").await;
    assert_eq!(greetings(&first, "welcome", "ada", 1).await, ["Welcome, ADA!"]);
    let sender = first.user(&id("welcome")).await.unwrap();
    assert_eq!(sender.username, "Welcome", "the sender is registered under its name");
    // Coming online again greets nobody: the next newcomer's greeting, queued after, shows
    // the hook is past it.
    visit(&first, "ada").await;
    visit(&first, "bob").await;
    assert_eq!(greetings(&first, "welcome", "bob", 1).await.len(), 1);
    assert_eq!(received(&first, "welcome", "ada").await.len(), 1);
    drop(first);

    // After a restart, presence starts afresh but the record stays.
    let second = engine(&app_on(url, "").await.unwrap());
    visit(&second, "ada").await;
    visit(&second, "eve").await;
    assert_eq!(greetings(&second, "welcome", "eve", 1).await, ["Welcome, EVE!"]);
    assert_eq!(received(&second, "welcome", "ada").await.len(), 1);
}

#[tokio::test]
async fn without_once_every_coming_online_is_greeted_but_not_a_second_device() {
    let config = "[plugins.welcome]\nonce = false\nwelcome_message = \"Hi {username}, again\"\n\
                  sender_id = \"bot\"\nsender_name = \"Bot\"";
    let app = app_on("sqlite::memory:", config).await.unwrap();
    let engine = engine(&app);
    let errors = record_errors(&engine);
    visit(&engine, "ada").await;
    assert_eq!(greetings(&engine, "bot", "ada", 1).await, ["Hi ADA, again"]);
    // Online on one device, then a second: one greeting for the two.
    engine.connect_user("ada", "Ada", json!({})).await.unwrap();
    engine.connect_user("ada", "Ada", json!({})).await.unwrap();
    // The sender coming online greets nobody, itself least of all.
    visit(&engine, "bot").await;
    visit(&engine, "bob").await;
    assert_eq!(greetings(&engine, "bot", "bob", 1).await.len(), 1);
    assert_eq!(received(&engine, "bot", "ada").await.len(), 2);
    assert_eq!(engine.user(&id("bot")).await.unwrap().username, "Bot");
    assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock().unwrap());
}

#[tokio::test]
async fn users_seen_online_before_the_plugin_are_not_newcomers() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_file(&dir);
    let before = Engine::new(
        Database::new(&DatabaseConfig { url: url.clone(), ..DatabaseConfig::default() }).unwrap(),
        xcore_messaging::MessagingConfig::default(),
    );
    before.migrate().await.unwrap();
    visit(&before, "ada").await;
    before.register_user("bob", "Bob", json!({})).await.unwrap();
    drop(before);

    let engine = engine(&app_on(&url, "").await.unwrap());
    visit(&engine, "ada").await;
    visit(&engine, "bob").await;
    assert_eq!(greetings(&engine, "welcome", "bob", 1).await, ["Welcome, Bob!"]);
    assert_eq!(received(&engine, "welcome", "ada").await.len(), 0);
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

/// An engine on a private SQLite database with the welcome table, greeting with
/// `config`, whose first `refusals` greetings a `before_message` hook refuses with
/// `refusal`.
async fn refusing_engine(refusals: usize, refusal: Refusal) -> Engine {
    let engine = Engine::in_memory().await.unwrap();
    engine.database().migrate(&[&MIGRATIONS]).await.unwrap();
    let left = Arc::new(Mutex::new(refusals));
    engine.before_message(0, "refuses", move |outgoing, _| {
        let (left, refusal) = (Arc::clone(&left), refusal.clone());
        async move {
            let mut left = left.lock().unwrap();
            if *left == 0 {
                return Ok(Decision::Accept(outgoing.draft));
            }
            *left -= 1;
            Ok(Decision::Refuse(refusal))
        }
    });
    let mut hooks = HookSet::default();
    register(&mut hooks, WelcomeConfig::default());
    engine.install(hooks);
    engine
}

#[tokio::test]
async fn a_refused_greeting_is_sent_the_next_time_the_user_comes_online() {
    let engine = refusing_engine(1, Refusal::new("quota_exceeded", "no more today")).await;
    let errors = record_errors(&engine);
    visit(&engine, "ada").await;
    for _ in 0..500 {
        if !errors.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match errors.lock().unwrap().as_slice() {
        [Event::Error { hook, during, reason }] => {
            assert_eq!((hook.as_str(), *during), ("welcome", "on_connect"));
            assert!(reason.contains("no more today"), "{reason}");
        }
        other => panic!("one failure expected: {other:?}"),
    }
    assert_eq!(received(&engine, "welcome", "ada").await.len(), 0);
    visit(&engine, "ada").await;
    assert_eq!(greetings(&engine, "welcome", "ada", 1).await, ["Welcome, ADA!"]);
}

#[tokio::test]
async fn a_short_rate_limit_is_waited_out() {
    let limited = Refusal::new("rate_limited", "slow down").retry_after(Duration::from_millis(20));
    let engine = refusing_engine(2, limited).await;
    let errors = record_errors(&engine);
    visit(&engine, "ada").await;
    assert_eq!(greetings(&engine, "welcome", "ada", 1).await, ["Welcome, ADA!"]);
    assert!(errors.lock().unwrap().is_empty(), "{:?}", errors.lock().unwrap());
}

/// The problems the build reports, one string per problem.
async fn build_problems(config: &str) -> String {
    app_on("sqlite::memory:", config).await.err().unwrap().to_string()
}

#[tokio::test]
async fn refuses_invalid_config_naming_every_problem() {
    let problems = build_problems(
        "[plugins.welcome]\nwelcome_message = \"Hello {user}\"\nsender_id = \"\"\n\
         sender_name = \"a\\nb\"\nonse = true",
    )
    .await;
    assert_eq!(
        problems,
        "the application cannot be built (1 problem):\n  - plugin `welcome`: invalid config: \
         `plugins.welcome.onse`: unknown key `onse`; expected one of: welcome_message, \
         sender_id, sender_name, once (from TOML source string); \
         `plugins.welcome.welcome_message`: `{user}` is not a placeholder; only `{username}` \
         is replaced (from TOML source string); `plugins.welcome.sender_id`: must be 1 to 128 \
         characters, not all blank (from TOML source string); `plugins.welcome.sender_name`: \
         must not contain control characters (from TOML source string)"
    );
    let blank = build_problems("[plugins.welcome]\nwelcome_message = \" \"").await;
    assert!(blank.contains("`plugins.welcome.welcome_message`: must not be blank"), "{blank}");
}

#[tokio::test]
async fn a_greeting_longer_than_the_engine_takes_is_refused_when_built() {
    let problems = build_problems("[messaging]\nmax_message_chars = 50").await;
    assert!(
        problems.contains(
            "`plugins.welcome.welcome_message`: can reach 74 characters with the longest \
             username, over `messaging.max_message_chars` (50)"
        ),
        "{problems}"
    );
}

#[tokio::test]
async fn needs_the_messaging_module() {
    let toml = "[database]\nurl = \"sqlite::memory:\"";
    let builder = AppBuilder::new(Figment::from(Toml::string(toml)));
    let error = builder.build(&Registry::new(vec![&Welcome, &DatabasePlugin])).err().unwrap();
    assert!(
        error
            .to_string()
            .contains("plugin `welcome` depends on `messaging`, which is not registered"),
        "{error}"
    );
}
