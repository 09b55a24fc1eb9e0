//! The rotating file on its own, the lines events become, and the plugin built into an
//! application with the modules it depends on, logging through the engine.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::{Value, json};
use xcore_core::{App, AppBuilder, BuildError, FnPlugin, Host, PluginMeta, Registry};
use xcore_db::DatabasePlugin;
use xcore_messaging::{Actor, Draft, Engine, Event, MessagingPlugin, UserId};
use xcore_middleware::{Authenticate, CurrentUser, Gate, Rejection, RolePermissions};

use super::*;

/// The lines of `path`, parsed.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_file_rotates_by_size_keeping_the_configured_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.log");
    let mut file = RotatingFile::open(&path, 100, 2).unwrap();
    // 10 lines of 30 bytes (29 and a newline): 3 per file.
    for n in 0..10 {
        file.write_line(&format!("{n:029}")).unwrap();
    }
    file.flush().unwrap();
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    assert_eq!(read(&path).lines().collect::<Vec<_>>(), [format!("{:029}", 9)]);
    let first: Vec<String> = (6..9).map(|n| format!("{n:029}")).collect();
    assert_eq!(read(&backup(&path, 1)).lines().collect::<Vec<_>>(), first);
    let second: Vec<String> = (3..6).map(|n| format!("{n:029}")).collect();
    assert_eq!(read(&backup(&path, 2)).lines().collect::<Vec<_>>(), second);
    assert!(!backup(&path, 3).exists(), "only two backups are kept");
    for path in [path.clone(), backup(&path, 1), backup(&path, 2)] {
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    // Reopened, the size already written counts.
    let mut file = RotatingFile::open(&path, 100, 2).unwrap();
    for n in 10..13 {
        file.write_line(&format!("{n:029}")).unwrap();
    }
    file.flush().unwrap();
    assert_eq!(read(&path).lines().count(), 1, "the fourth line rotated");
    assert_eq!(read(&backup(&path, 1)).lines().count(), 3);
}

#[test]
fn without_backups_the_file_starts_afresh_and_an_oversized_line_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.log");
    let mut file = RotatingFile::open(&path, 50, 0).unwrap();
    file.write_line(&"a".repeat(30)).unwrap();
    file.write_line(&"b".repeat(30)).unwrap();
    file.write_line(&"c".repeat(80)).unwrap();
    file.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", "c".repeat(80)));
    assert!(!backup(&path, 1).exists());

    // A limit of 0 never rotates.
    let mut file = RotatingFile::open(&path, 0, 3).unwrap();
    for _ in 0..10 {
        file.write_line(&"d".repeat(30)).unwrap();
    }
    file.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 11);
}

fn message(body: &str) -> xcore_messaging::Message {
    serde_json::from_value(json!({
        "id": 7, "conversation_id": 3, "seq": 2, "sender_id": "ada", "body": body,
        "attachment": {"name": "a.png"}, "created_at": "2026-12-01T10:00:00Z",
        "edited_at": null, "deleted": false,
    }))
    .unwrap()
}

#[test]
fn message_content_is_written_only_at_debug() {
    let event = Event::MessageEdited {
        message: message("hello there"),
        previous: message("hello"),
        by: UserId::from("ada"),
    };
    let info: Value = serde_json::from_str(&line(&event, Level::Info).unwrap()).unwrap();
    assert_eq!(info["event"], "message_edited");
    assert_eq!(info["level"], "info");
    assert_eq!(info["by"], "ada");
    assert_eq!(info["message"]["seq"], 2);
    assert_eq!(info["message"]["body_chars"], 11);
    assert_eq!(info["previous"]["body_chars"], 5);
    assert_eq!(info["message"]["has_attachment"], true);
    assert!(info["message"].get("body").is_none() && info["message"].get("attachment").is_none());
    assert!(info["ts"].as_str().unwrap().ends_with('Z'), "{info}");

    let debug: Value = serde_json::from_str(&line(&event, Level::Debug).unwrap()).unwrap();
    assert_eq!(debug["message"]["body"], "hello there");
    assert_eq!(debug["previous"]["body"], "hello");
    assert_eq!(debug["message"]["attachment"]["name"], "a.png");

    // Above info only hook failures are written, at `error`.
    assert!(line(&event, Level::Warning).is_none());
    let failure = Event::Error { hook: "spam".into(), during: "on_message", reason: "x".into() };
    let error: Value = serde_json::from_str(&line(&failure, Level::Error).unwrap()).unwrap();
    assert_eq!((error["level"].as_str(), error["hook"].as_str()), (Some("error"), Some("spam")));
}

#[test]
fn levels_read_as_the_original_wrote_them_and_bad_settings_are_refused() {
    for (text, level) in
        [("DEBUG", Level::Debug), ("info", Level::Info), ("WARNING", Level::Warning)]
    {
        let config: AdvancedLoggingConfig =
            Figment::from(Toml::string(&format!("level = \"{text}\""))).extract().unwrap();
        assert_eq!(config.level, level);
    }
    let unknown =
        Figment::from(Toml::string("level = \"loud\"")).extract::<AdvancedLoggingConfig>();
    assert!(unknown.unwrap_err().to_string().contains("loud"));

    let config = AdvancedLoggingConfig {
        file: PathBuf::from("logs/"),
        backups: 5000,
        queue: 0,
        ..AdvancedLoggingConfig::default()
    };
    let mut problems = Problems::default();
    config.validate(&mut problems);
    let text = format!("{problems:?}");
    for key in ["file", "backups", "queue"] {
        assert!(text.contains(key), "{key} in {text}");
    }
}

/// No token is valid: the messaging routes are not called here, but the module needs a
/// gate.
struct NoTokens;

impl Authenticate for NoTokens {
    fn authenticate(&self, _: &str) -> Result<CurrentUser, Rejection> {
        Err(Rejection::Invalid)
    }
}

/// Stands in for the auth module: provides the gate under its name.
static AUTH: FnPlugin =
    FnPlugin::new(PluginMeta { section: Some("auth"), ..PluginMeta::new("auth") }, |app| {
        app.insert_resource(Gate::new(NoTokens, RolePermissions::default()));
        Ok(())
    });

/// The plugin with the modules it depends on, on an in-memory database, with `data` as
/// the data directory; started as the server does it.
async fn app_in(data: &Path, config: &str, offline: bool) -> Result<App, BuildError> {
    let toml = format!("[database]\nurl = \"sqlite::memory:\"\n{config}");
    let host = Host { data_dir: data.to_owned(), offline, ..Host::default() };
    let builder = AppBuilder::new(Figment::from(Toml::string(&toml))).with_host(host);
    let registry = Registry::new(vec![&AdvancedLogging, &MessagingPlugin, &DatabasePlugin, &AUTH]);
    let mut app = builder.build(&registry)?;
    if !offline {
        app.start().await.unwrap();
    }
    Ok(app)
}

/// Runs the shutdown hooks as the server does, last built first.
async fn stop(app: App) {
    for hook in app.shutdown.into_iter().rev() {
        hook.run().await.unwrap();
    }
}

/// Waits (bounded) until the engine's hook queues have handed `count` lines to the
/// writer, flushing through the shutdown hooks at the end.
async fn logged(path: &Path, count: usize, app: App) -> Vec<Value> {
    for _ in 0..500 {
        if lines(path).len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop(app).await;
    lines(path)
}

#[tokio::test]
async fn the_plugin_logs_the_engine_events_to_a_private_file_under_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[plugins.advanced_logging]\nfile = \"logs/chat.log\"\nlevel = \"debug\"";
    let app = app_in(&data, config, false).await.unwrap();
    let engine = app.extensions.get::<Engine>().unwrap().clone();
    engine.connect_user("ada", "Ada", json!({})).await.unwrap();
    let sent = engine.send_message("ada", "hello").await.unwrap();
    let ada = Actor::user("ada");
    engine
        .edit_message(&ada, sent.conversation_id, sent.seq, Draft::text("hello, all"))
        .await
        .unwrap();
    engine.delete_message(&ada, sent.conversation_id, sent.seq).await.unwrap();
    engine.disconnect_user("ada").await.unwrap();

    let path = data.join("logs/chat.log");
    let logged = logged(&path, 5, app).await;
    let events: Vec<&str> = logged.iter().map(|line| line["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["connect", "message", "message_edited", "message_deleted", "disconnect"]);
    assert_eq!(logged[1]["message"]["body"], "hello");
    assert_eq!(logged[2]["previous"]["body"], "hello");
    assert_eq!(logged[3]["previous"]["body"], "hello, all");
    assert_eq!(logged[3]["message"]["deleted"], true);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&data.join("logs")), 0o700);
}

#[tokio::test]
async fn a_busy_log_rotates_without_losing_a_line_within_its_backups() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[plugins.advanced_logging]\nmax_bytes = 2000\nbackups = 50";
    let app = app_in(dir.path(), config, false).await.unwrap();
    let engine = app.extensions.get::<Engine>().unwrap().clone();
    engine.connect_user("ada", "Ada", json!({})).await.unwrap();
    for n in 0..100 {
        engine.send_message("ada", &format!("message {n}")).await.unwrap();
    }
    let path = dir.path().join("messages.log");
    // Wait for the last message's line, wherever rotation has put the others.
    for _ in 0..500 {
        let current = lines(&path);
        if current.last().is_some_and(|line| line["message"]["seq"] == 100) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop(app).await;
    let mut files: Vec<_> = (1..=50).map(|n| backup(&path, n)).filter(|p| p.exists()).collect();
    assert!(files.len() > 3, "the log rotated: {files:?}");
    files.reverse();
    files.push(path);
    let all: Vec<Value> = files.iter().flat_map(|file| lines(file)).collect();
    let seqs: Vec<i64> = all
        .iter()
        .filter(|line| line["event"] == "message")
        .map(|line| line["message"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "every message, in order, once");
    assert!(all.iter().all(|line| line["message"].get("body").is_none()), "info hides bodies");
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 2000, "{}", file.display());
    }
}

#[tokio::test]
async fn built_offline_the_plugin_opens_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_in(dir.path(), "", true).await.unwrap();
    assert!(app.order.contains(&"advanced_logging"));
    drop(app);
    assert!(!dir.path().join("messages.log").exists());
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_stops_startup_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("messages.log")).unwrap();
    let toml = "[database]\nurl = \"sqlite::memory:\"";
    let host = Host { data_dir: dir.path().to_owned(), ..Host::default() };
    let builder = AppBuilder::new(Figment::from(Toml::string(toml))).with_host(host);
    let registry = Registry::new(vec![&AdvancedLogging, &MessagingPlugin, &DatabasePlugin, &AUTH]);
    let mut app = builder.build(&registry).unwrap();
    let (plugin, error) = app.start().await.unwrap_err();
    assert_eq!(plugin, "advanced_logging");
    assert!(error.to_string().contains("messages.log"), "{error}");
}
