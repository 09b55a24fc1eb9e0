//! The hook through the engine, and the plugin built into an application with the modules
//! it depends on.

use std::time::Duration;

use serde_json::json;
use xcore_core::{App, BuildError};
use xcore_messaging::{Actor, Engine, Error, Refusal, UserId};

use super::*;

/// The plugin with the modules it depends on, built and started as the server does it.
async fn app(config: &str) -> Result<App, BuildError> {
    xcore_messaging::testing::app_on(&[&MessageRateLimiter], "sqlite::memory:", config).await
}

/// An engine on a private database limited by `config`, with users `ids`.
async fn engine(config: &RateLimiterConfig, ids: &[&str]) -> Engine {
    let engine = Engine::in_memory().await.unwrap();
    let mut hooks = HookSet::default();
    register(&mut hooks, config);
    engine.install(hooks);
    for id in ids {
        engine.register_user(*id, id, json!({})).await.unwrap();
    }
    engine
}

fn refusal(sent: xcore_messaging::Result<xcore_messaging::Message>) -> Refusal {
    match sent {
        Err(Error::Refused(refusal)) => refusal,
        other => panic!("refused expected: {other:?}"),
    }
}

/// A refusal the sender can act on: `rate_limited`, lifted within one emission interval.
fn check_limited(refusal: &Refusal, interval: Duration) {
    assert_eq!(refusal.code, "rate_limited");
    let wait = refusal.retry_after.unwrap();
    assert!(wait > Duration::ZERO && wait <= interval, "{wait:?} within {interval:?}");
}

#[tokio::test]
async fn a_user_over_their_rate_is_refused_and_edits_count() {
    let config = RateLimiterConfig { per_user: Rate::per(3, 3600), ..RateLimiterConfig::default() };
    let engine = engine(&config, &["ada", "bob"]).await;
    let lobby = engine.conversations(&UserId::from("ada")).await.unwrap()[0].conversation.id;
    engine.send("ada", lobby, "one").await.unwrap();
    engine.send("ada", lobby, "two").await.unwrap();
    engine.edit_message(&Actor::user("ada"), lobby, 1, "one, edited").await.unwrap();
    let refused = refusal(engine.send("ada", lobby, "three").await);
    check_limited(&refused, Duration::from_secs(1200));
    assert!(refused.message.contains("at most 3 every 3600 s"), "{}", refused.message);
    check_limited(
        &refusal(engine.edit_message(&Actor::user("ada"), lobby, 2, "two, edited").await),
        Duration::from_secs(1200),
    );
    // Nothing refused was stored; Bob has his own budget.
    assert_eq!(engine.conversation(&UserId::from("ada"), lobby).await.unwrap().last_seq, 2);
    engine.send("bob", lobby, "hi").await.unwrap();
}

#[tokio::test]
async fn a_group_over_its_rate_is_refused_but_a_direct_conversation_is_not() {
    let config = RateLimiterConfig {
        per_user: Rate::off(),
        per_group: Rate::per(2, 60),
        exempt: vec!["bot".to_owned()],
        ..RateLimiterConfig::default()
    };
    let engine = engine(&config, &["ada", "bob", "bot"]).await;
    let members = [UserId::from("bob"), UserId::from("bot")];
    let group = engine.create_group("ada", "tea", &members).await.unwrap().id;
    engine.send("ada", group, "one").await.unwrap();
    engine.send("bob", group, "two").await.unwrap();
    let refused = refusal(engine.send("bob", group, "three").await);
    check_limited(&refused, Duration::from_secs(30));
    assert!(refused.message.contains("from all its members"), "{}", refused.message);
    // The exempt bot is not counted; a direct conversation has no group limit.
    engine.send("bot", group, "announcement").await.unwrap();
    let direct = engine.direct(&UserId::from("ada"), &UserId::from("bob")).await.unwrap().id;
    for n in 0..5 {
        engine.send("ada", direct, format!("psst {n}")).await.unwrap();
    }
}

#[tokio::test]
async fn the_plugin_limits_with_its_configured_rates() {
    let app = app("[plugins.message_rate_limiter]\nper_user = { messages = 2, per_secs = 60 }")
        .await
        .unwrap();
    let engine = app.extensions.get::<Engine>().unwrap().clone();
    engine.register_user("ada", "Ada", json!({})).await.unwrap();
    let lobby = engine.conversations(&UserId::from("ada")).await.unwrap()[0].conversation.id;
    engine.send("ada", lobby, "one").await.unwrap();
    engine.send("ada", lobby, "two").await.unwrap();
    check_limited(&refusal(engine.send("ada", lobby, "three").await), Duration::from_secs(30));
}

#[tokio::test]
async fn refuses_invalid_config_naming_every_problem() {
    let error = app("[plugins.message_rate_limiter]\nper_user = { messages = 0, per_secs = 10 }\n\
         per_group = { messages = 5, per_secs = 100000 }\nexempt = [\" \"]\nmax_tracked = 0\n\
         max_tracks = 1")
    .await
    .err()
    .unwrap();
    assert_eq!(
        error.to_string(),
        "the application cannot be built (1 problem):\n  - plugin `message_rate_limiter`: \
         invalid config: `plugins.message_rate_limiter.max_tracks`: unknown key `max_tracks`; \
         expected one of: per_user, per_group, exempt, max_tracked (from TOML source string); \
         `plugins.message_rate_limiter.per_user`: `messages` must be at least 1 \
         (`enabled = false` turns the limit off) (from TOML source string); \
         `plugins.message_rate_limiter.per_group`: `per_secs` must be at most 86400 (a day); \
         longer budgets are quotas (from TOML source string); \
         `plugins.message_rate_limiter.exempt`: user ids must not be blank (from TOML source \
         string); `plugins.message_rate_limiter.max_tracked`: must be at least 1 (from TOML \
         source string)"
    );
    let missing = app("[plugins.message_rate_limiter]\nper_group = { messages = 5 }")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("`per_secs` must be at least 1"), "{missing}");
}

#[tokio::test]
async fn both_limits_turned_off_install_no_hook() {
    let app = app("[plugins.message_rate_limiter]\nper_user = { enabled = false }\n\
         per_group = { enabled = false }")
    .await
    .unwrap();
    let engine = app.extensions.get::<Engine>().unwrap().clone();
    engine.register_user("ada", "Ada", json!({})).await.unwrap();
    let lobby = engine.conversations(&UserId::from("ada")).await.unwrap()[0].conversation.id;
    for n in 0..30 {
        engine.send("ada", lobby, format!("m{n}")).await.unwrap();
    }
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let config = RateLimiterConfig::default();
    assert_eq!((config.per_user, config.per_group), (Rate::per(20, 10), Rate::per(200, 10)));
    assert!(xcore_core::config::problems(&config).is_empty());
}
