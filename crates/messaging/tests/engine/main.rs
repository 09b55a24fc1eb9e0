//! The engine through its public API, on SQLite and, when `XCORE_TEST_DATABASE_URL` is
//! set, on PostgreSQL: one test binary, a module per concern.

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

mod conversations;
mod hooks;
mod messages;
mod nodes;
