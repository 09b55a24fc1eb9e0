//! The hook through the engine, and the plugin built into an application with the modules
//! it depends on, on SQLite and, when `XCORE_TEST_DATABASE_URL` is set, on PostgreSQL.

mod http;

use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::json;
use xcore_core::{App, AppBuilder, BuildError, Registry};
use xcore_db::DatabasePlugin;
use xcore_messaging::{Actor, ConversationId, Engine, Refusal, UserId};

use super::*;

/// The plugin with the modules it depends on, built and started as the server does it,
/// over `database`.
async fn app_on(database: &str, config: &str) -> Result<App, BuildError> {
    xcore_messaging::testing::app_on(&[&ModerationPlugin], database, config).await
}

fn engine(app: &App) -> Engine {
    app.extensions.get::<Engine>().unwrap().clone()
}

fn moderation(app: &App) -> Moderation {
    app.extensions.get::<Moderation>().unwrap().clone()
}

fn id(text: &str) -> UserId {
    UserId::from(text)
}

/// Registers `ids` and answers the lobby, where every user is.
async fn users(engine: &Engine, ids: &[&str]) -> ConversationId {
    for user in ids {
        match engine.register_user(*user, user, json!({})).await {
            Ok(_) | Err(xcore_messaging::Error::UserExists(_)) => {}
            Err(error) => panic!("{error}"),
        }
    }
    engine.conversations(&id(ids[0])).await.unwrap()[0].conversation.id
}

/// An engine on a private database moderated with `config`.
async fn bare(config: &ModerationConfig) -> (Engine, Moderation) {
    let engine = Engine::in_memory().await.unwrap();
    engine.database().migrate(&[&MIGRATIONS]).await.unwrap();
    let moderation =
        Moderation::new(engine.database().clone(), Duration::from_secs(config.cache_secs));
    let mut hooks = HookSet::default();
    register(&mut hooks, &moderation, config).unwrap();
    engine.install(hooks);
    (engine, moderation)
}

fn words(words: &[&str], action: WordAction) -> ModerationConfig {
    ModerationConfig {
        words: words.iter().map(|word| (*word).to_owned()).collect(),
        action,
        ..ModerationConfig::default()
    }
}

fn refusal(sent: xcore_messaging::Result<xcore_messaging::Message>) -> Refusal {
    match sent {
        Err(xcore_messaging::Error::Refused(refusal)) => refusal,
        other => panic!("refused expected: {other:?}"),
    }
}

/// Waits for the word filter's records (written by a task of their own) until there are
/// `count` actions, then answers them, newest first.
async fn recorded(moderation: &Moderation, count: usize) -> Vec<Action> {
    let filter = ActionFilter { limit: 100, ..ActionFilter::default() };
    for _ in 0..500 {
        let actions = moderation.actions(&filter).await.unwrap();
        if actions.len() >= count {
            return actions;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    moderation.actions(&filter).await.unwrap()
}

#[tokio::test]
async fn listed_words_are_refused_in_sends_and_edits_and_recorded() {
    let (engine, moderation) = bare(&words(&["darn", "heck"], WordAction::Refuse)).await;
    let lobby = users(&engine, &["ada"]).await;
    let refused = refusal(engine.send("ada", lobby, "well DARN it").await);
    assert_eq!((refused.code.as_str(), refused.retry_after), ("word_refused", None));
    // Records are written by tasks of their own: one at a time keeps their order.
    recorded(&moderation, 1).await;
    // Whole words only: `hecking` and `darned` are other words.
    let sent = engine.send("ada", lobby, "darned hecking good").await.unwrap();
    let edit = engine.edit_message(&Actor::user("ada"), lobby, sent.seq, "oh heck!").await;
    assert_eq!(refusal(edit).code, "word_refused");
    let history = engine.message(&Actor::user("ada"), lobby, sent.seq).await.unwrap();
    assert_eq!(history.body, "darned hecking good", "the refused edit changed nothing");
    assert_eq!(engine.conversation(&id("ada"), lobby).await.unwrap().last_seq, 1);

    let actions = recorded(&moderation, 2).await;
    let summary: Vec<_> = actions
        .iter()
        .map(|a| (a.actor.as_str(), a.action, a.user.clone(), a.conversation, a.seq))
        .collect();
    assert_eq!(
        summary,
        [
            (WORD_FILTER, ActionKind::Refuse, Some(id("ada")), Some(lobby), Some(sent.seq)),
            (WORD_FILTER, ActionKind::Refuse, Some(id("ada")), Some(lobby), None),
        ]
    );
    assert_eq!(actions[1].reason.as_deref(), Some("matched `DARN`"));
}

#[tokio::test]
async fn listed_words_are_masked_in_sends_and_edits_and_recorded() {
    let config =
        ModerationConfig { mask: '#', ..words(&["дурак", "bad word"], WordAction::Mask) };
    let (engine, moderation) = bare(&config).await;
    let lobby = users(&engine, &["ada"]).await;
    let sent = engine.send("ada", lobby, "Ты ДУРАК, a Bad  Word; дураки").await.unwrap();
    assert_eq!(sent.body, "Ты #####, a ###  ####; дураки");
    recorded(&moderation, 1).await;
    let edited = engine.edit_message(&Actor::user("ada"), lobby, sent.seq, "дурак!").await.unwrap();
    assert_eq!(edited.body, "#####!");
    let clean = engine.send("ada", lobby, "nothing to see").await.unwrap();
    assert_eq!(clean.body, "nothing to see");

    let actions = recorded(&moderation, 2).await;
    let kinds: Vec<_> = actions.iter().map(|a| (a.action, a.seq)).collect();
    assert_eq!(kinds, [(ActionKind::Mask, Some(sent.seq)), (ActionKind::Mask, None)]);
    assert_eq!(actions[1].reason.as_deref(), Some("matched `ДУРАК`, `Bad  Word`"));
}

#[tokio::test]
async fn a_mute_refuses_until_it_ends_or_is_lifted() {
    let (engine, moderation) = bare(&ModerationConfig::default()).await;
    let lobby = users(&engine, &["ada", "bob", "mod"]).await;
    let sent = engine.send("ada", lobby, "before").await.unwrap();
    let by = id("mod");

    // An hour: refused with the time left, sends and edits alike; others still send.
    let sanction =
        moderation.mute(&by, &id("ada"), Some(Duration::from_secs(3600)), Some(" flood ")).await;
    let sanction = sanction.unwrap();
    assert_eq!((sanction.kind, sanction.reason.as_deref()), (SanctionKind::Mute, Some("flood")));
    let refused = refusal(engine.send("ada", lobby, "hello").await);
    assert_eq!(refused.code, "muted");
    let wait = refused.retry_after.unwrap();
    assert!(wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3600), "{wait:?}");
    let edit = engine.edit_message(&Actor::user("ada"), lobby, sent.seq, "edited").await;
    assert_eq!(refusal(edit).code, "muted");
    engine.send("bob", lobby, "hi").await.unwrap();
    assert_eq!(moderation.sanctions(SanctionKind::Mute).await.unwrap(), [sanction]);

    // Lifted: sends again; lifting again finds nothing.
    assert!(moderation.unmute(&by, &id("ada"), None).await.unwrap());
    engine.send("ada", lobby, "back").await.unwrap();
    assert!(!moderation.unmute(&by, &id("ada"), None).await.unwrap());

    // Until lifted: no time to wait.
    moderation.mute(&by, &id("ada"), None, None).await.unwrap();
    let refused = refusal(engine.send("ada", lobby, "hello").await);
    assert_eq!((refused.code.as_str(), refused.retry_after), ("muted", None));

    // A short mute replaces it, and ends by itself.
    moderation.mute(&by, &id("ada"), Some(Duration::from_millis(50)), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.send("ada", lobby, "free").await.unwrap();
    assert!(moderation.sanctions(SanctionKind::Mute).await.unwrap().is_empty());
    assert!(!moderation.unmute(&by, &id("ada"), None).await.unwrap(), "it had ended");
    assert!(moderation.mute(&by, &id("ada"), Some(Duration::ZERO), None).await.is_err());

    let actions = recorded(&moderation, 4).await;
    let kinds: Vec<_> = actions.iter().map(|a| a.action).collect();
    use ActionKind::{Mute, Unmute};
    assert_eq!(kinds, [Mute, Mute, Unmute, Mute]);
    assert!(actions.iter().all(|a| a.actor == "mod" && a.user == Some(id("ada"))));
    assert!(actions[0].until.is_some() && actions[1].until.is_none());
    assert_eq!(actions[3].reason.as_deref(), Some("flood"));
}

#[tokio::test]
async fn a_ban_refuses_until_it_is_lifted() {
    let (engine, moderation) = bare(&words(&["darn"], WordAction::Refuse)).await;
    let lobby = users(&engine, &["ada", "mod"]).await;
    let sent = engine.send("ada", lobby, "hello").await.unwrap();
    let by = id("mod");
    moderation.ban(&by, &id("ada"), Some("spam")).await.unwrap();
    let refused = refusal(engine.send("ada", lobby, "darn").await);
    assert_eq!((refused.code.as_str(), refused.retry_after), ("banned", None));
    let edit = engine.edit_message(&Actor::user("ada"), lobby, sent.seq, "edited").await;
    assert_eq!(refusal(edit).code, "banned");
    let bans = moderation.sanctions(SanctionKind::Ban).await.unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!((&bans[0].user, bans[0].until, bans[0].by.as_str()), (&id("ada"), None, "mod"));

    assert!(moderation.unban(&by, &id("ada"), Some("appealed")).await.unwrap());
    engine.send("ada", lobby, "thanks").await.unwrap();
    assert!(!moderation.unban(&by, &id("ada"), None).await.unwrap());
    // The banned user's refused message was not the word filter's business: no record.
    let actions = recorded(&moderation, 2).await;
    let kinds: Vec<_> = actions.iter().map(|a| (a.action, a.reason.as_deref())).collect();
    assert_eq!(kinds, [(ActionKind::Unban, Some("appealed")), (ActionKind::Ban, Some("spam"))]);
}

#[tokio::test]
async fn a_moderator_deletes_any_message_and_it_is_recorded() {
    let (engine, moderation) = bare(&ModerationConfig::default()).await;
    users(&engine, &["ada", "bob", "mod"]).await;
    let group = engine.create_group("ada", "tea", &[id("bob")]).await.unwrap().id;
    let sent = engine.send("bob", group, "rude").await.unwrap();
    let by = id("mod");
    // Not a member of the group: a moderator all the same.
    let deleted =
        moderation.delete_message(&engine, &by, group, sent.seq, Some("rude")).await.unwrap();
    assert!(deleted.deleted && deleted.body.is_empty(), "{deleted:?}");
    // Again: nothing changes, nothing is recorded.
    assert!(moderation.delete_message(&engine, &by, group, sent.seq, None).await.unwrap().deleted);
    let missing = moderation.delete_message(&engine, &by, group, 99, None).await;
    assert!(
        matches!(missing, Err(Error::Messaging(xcore_messaging::Error::UnknownMessage { .. }))),
        "{missing:?}"
    );
    let actions = recorded(&moderation, 1).await;
    assert_eq!(actions.len(), 1);
    let action = &actions[0];
    assert_eq!(
        (action.action, &action.user, action.conversation, action.seq, action.actor.as_str()),
        (ActionKind::Delete, &Some(id("bob")), Some(group), Some(sent.seq), "mod")
    );
}

#[tokio::test]
async fn actions_are_paged_newest_first_and_filtered_by_user() {
    let (_, moderation) = bare(&ModerationConfig::default()).await;
    let by = id("mod");
    for n in 0..5 {
        moderation.ban(&by, &id(&format!("u{}", n % 2)), None).await.unwrap();
    }
    let page = |user: Option<&str>, before: Option<i64>, limit: u32| {
        let filter = ActionFilter { user: user.map(id), before, limit };
        let moderation = moderation.clone();
        async move {
            let actions = moderation.actions(&filter).await.unwrap();
            actions.iter().map(|a| a.id).collect::<Vec<_>>()
        }
    };
    let all = page(None, None, 10).await;
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    assert_eq!(page(None, None, 2).await, all[..2]);
    assert_eq!(page(None, Some(all[1]), 2).await, all[2..4]);
    assert_eq!(page(Some("u0"), None, 10).await, [all[0], all[2], all[4]]);
    assert!(page(Some("nobody"), None, 10).await.is_empty());
}

#[tokio::test]
async fn the_node_that_changes_a_sanction_sees_it_at_once_and_others_within_cache_secs() {
    let config = ModerationConfig { cache_secs: 300, ..ModerationConfig::default() };
    let (engine, here) = bare(&config).await;
    let lobby = users(&engine, &["ada"]).await;
    engine.send("ada", lobby, "cached: not muted").await.unwrap();
    here.mute(&id("mod"), &id("ada"), None, None).await.unwrap();
    assert_eq!(refusal(engine.send("ada", lobby, "hello").await).code, "muted");
    here.unmute(&id("mod"), &id("ada"), None).await.unwrap();
    engine.send("ada", lobby, "back").await.unwrap();

    // Another node over the same database, caching for a second, sees this one's ban once
    // its cache expires.
    let there = Moderation::new(engine.database().clone(), Duration::from_secs(1));
    assert_eq!(there.refusal(&id("ada")).await.unwrap(), None);
    here.ban(&id("mod"), &id("ada"), None).await.unwrap();
    let mut seen = None;
    for _ in 0..100 {
        seen = there.refusal(&id("ada")).await.unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.map(|refusal| refusal.code), Some("banned".to_owned()));
}

#[tokio::test]
async fn sanctions_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_restart(&format!("sqlite://{}", dir.path().join("chat.db").display())).await;
}

#[tokio::test]
async fn sanctions_survive_a_restart_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("moderation").await else { return };
    check_restart(&url).await;
}

async fn check_restart(url: &str) {
    let config = "[plugins.moderation]\nwords = [\"darn\"]\naction = \"mask\"";
    let first = app_on(url, config).await.unwrap();
    let (engine, moderation) = (engine(&first), moderation(&first));
    let lobby = users(&engine, &["ada", "bob", "eve"]).await;
    assert_eq!(engine.send("eve", lobby, "darn").await.unwrap().body, "****");
    moderation.mute(&id("mod"), &id("ada"), None, Some("flood")).await.unwrap();
    moderation.mute(&id("mod"), &id("eve"), Some(Duration::from_secs(3600)), None).await.unwrap();
    moderation.ban(&id("mod"), &id("bob"), None).await.unwrap();
    let before = recorded(&moderation, 4).await;
    drop((engine, moderation, first));

    let second = app_on(url, config).await.unwrap();
    let (engine, moderation) = (self::engine(&second), self::moderation(&second));
    assert_eq!(refusal(engine.send("ada", lobby, "hi").await).code, "muted");
    let timed = refusal(engine.send("eve", lobby, "hi").await);
    assert_eq!(timed.code, "muted");
    assert!(timed.retry_after.is_some());
    assert_eq!(refusal(engine.send("bob", lobby, "hi").await).code, "banned");
    let mutes = moderation.sanctions(SanctionKind::Mute).await.unwrap();
    let mut muted: Vec<_> = mutes.iter().map(|s| s.user.to_string()).collect();
    muted.sort();
    assert_eq!(muted, ["ada", "eve"]);
    assert_eq!(moderation.sanctions(SanctionKind::Ban).await.unwrap().len(), 1);
    assert_eq!(recorded(&moderation, 4).await, before);
    assert!(moderation.unmute(&id("mod"), &id("ada"), None).await.unwrap());
    engine.send("ada", lobby, "back").await.unwrap();
}

#[tokio::test]
async fn the_plugin_refuses_with_its_configured_words() {
    let app = app_on("sqlite::memory:", "[plugins.moderation]\nwords = [\"darn\"]").await.unwrap();
    let engine = engine(&app);
    let lobby = users(&engine, &["ada"]).await;
    assert_eq!(refusal(engine.send("ada", lobby, "Darn.").await).code, "word_refused");
    engine.send("ada", lobby, "fine").await.unwrap();
}

/// The problems the build reports.
async fn build_problems(config: &str) -> String {
    app_on("sqlite::memory:", config).await.err().unwrap().to_string()
}

#[tokio::test]
async fn refuses_invalid_config_naming_every_problem() {
    let problems = build_problems(
        "[plugins.moderation]\nwords = [\"ok\", \" \", \"a\\u0007b\"]\naction = \"mask\"\n\
         mask = \" \"\ncache_secs = 301\nword = []",
    )
    .await;
    assert_eq!(
        problems,
        "the application cannot be built (1 problem):\n  - plugin `moderation`: invalid config: \
         `plugins.moderation.word`: unknown key `word`; expected one of: words, action, mask, \
         cache_secs (from TOML source string); `plugins.moderation.words`: words must not be \
         blank (from TOML source string); `plugins.moderation.words`: \"a\\u{7}b\" contains \
         control characters (from TOML source string); `plugins.moderation.mask`: must be a \
         visible character (from TOML source string); `plugins.moderation.cache_secs`: must \
         be at most 300 (five minutes) (from TOML source string)"
    );
    let action = build_problems("[plugins.moderation]\naction = \"delete\"").await;
    assert!(action.contains("`plugins.moderation.action`"), "{action}");
    let mask = build_problems("[plugins.moderation]\nmask = \"**\"").await;
    assert!(mask.contains("`plugins.moderation.mask`"), "{mask}");
}

#[tokio::test]
async fn needs_the_messaging_module() {
    let toml = "[database]\nurl = \"sqlite::memory:\"";
    let builder = AppBuilder::new(Figment::from(Toml::string(toml)));
    let registry =
        Registry::new(vec![&ModerationPlugin, &DatabasePlugin, &xcore_messaging::testing::AUTH]);
    let error = builder.build(&registry).err().unwrap().to_string();
    assert!(error.contains("depends on `messaging`, which is not registered"), "{error}");
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let config = ModerationConfig::default();
    assert_eq!(config, words(&[], WordAction::Refuse));
    assert_eq!((config.mask, config.cache_secs), ('*', 2));
    assert!(xcore_core::config::problems(&config).is_empty());
    // After the message rate limiter (-1000), before the default order.
    assert_eq!(ORDER, -500);
}
