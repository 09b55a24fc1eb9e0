//! The [`Engine`]: every operation, its permission checks and its events.
//!
//! The engine is a cheap handle (an `Arc`) over the store (the [`Database`]), this node's
//! presence, the hooks and the committer. Operations are split by what they act on:
//! `users` (profiles and presence), `groups` (groups, members, direct conversations),
//! `messages` (send, edit, delete, history, read markers).

/// Locks conversation `$id`'s row until the transaction ends, as a commit does: inside
/// `with_conn!`, with `diesel::ExpressionMethods`, `QueryDsl` and `RunQueryDsl` in scope.
macro_rules! lock_conversation {
    ($c:expr, $id:expr) => {
        diesel::update($crate::schema::conversations::table.find($id))
            .set(
                $crate::schema::conversations::last_seq.eq($crate::schema::conversations::last_seq),
            )
            .execute($c)
            .await
    };
}

mod groups;
mod messages;
mod users;

pub(crate) use groups::{MAX_GROUP_NAME, direct_key};
pub(crate) use users::{MAX_USERNAME, check_profile};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::OnceCell;
use xcore_db::{Database, DatabaseConfig};

use crate::commit::Committer;
use crate::config::MessagingConfig;
use crate::error::{Error, Result};
use crate::hooks::{HookError, HookSet, Hooks, Limits};
use crate::presence::PresenceMap;
use crate::{EventKind, MIGRATIONS};

/// The messaging engine. Clone it freely: clones share everything.
///
/// ```no_run
/// # async fn demo() -> Result<(), xcore_messaging::Error> {
/// use xcore_messaging::{Engine, EventKind};
///
/// let engine = Engine::in_memory().await?;
/// engine.on(EventKind::Message, |event, _engine| async move {
///     println!("{event:?}");
///     Ok(())
/// });
/// engine.connect_user("ada", "Ada", serde_json::json!({})).await?;
/// engine.connect_user("bob", "Bob", serde_json::json!({})).await?;
/// let group = engine.create_group("ada", "tea", &["bob".into()]).await?;
/// engine.send("bob", group.id, "hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub db: Database,
    pub config: MessagingConfig,
    pub limits: Limits,
    pub committer: Committer,
    pub presence: PresenceMap,
    pub hooks: RwLock<Arc<Hooks>>,
    /// The lobby's id, read from the database on first use.
    pub lobby: OnceCell<i64>,
    /// Membership checks made before hooks run (the commit checks again).
    pub roles: moka::sync::Cache<(i64, crate::UserId), (crate::Role, crate::ConversationKind)>,
    /// The task ending expired presence leases, started on the first lease.
    pub sweeper: std::sync::OnceLock<()>,
    /// Every event, for the real-time gateway (see [`Engine::live`]).
    pub live: tokio::sync::broadcast::Sender<Arc<crate::Event>>,
    /// Who is online on the other nodes, when they tell.
    pub remote: std::sync::OnceLock<Arc<dyn crate::RemotePresence>>,
}

/// Events a [`Engine::live`] receiver may fall behind by before it is told it lagged.
const LIVE_CAPACITY: usize = 65_536;

impl Engine {
    /// An engine over `db`, whose messaging tables must exist ([`migrate`](Self::migrate)
    /// creates them; the server's database module does it at startup).
    pub fn new(db: Database, config: MessagingConfig) -> Self {
        let limits = Limits {
            before: Duration::from_millis(config.before_hook_timeout_ms),
            notify: Duration::from_millis(config.hook_timeout_ms),
            queue: config.hook_queue,
        };
        let committer = Committer::new(
            db.clone(),
            config.group_commit,
            config.max_batch,
            config.commit_writers,
        );
        let inner = Inner {
            db,
            config,
            limits,
            committer,
            presence: PresenceMap::default(),
            hooks: RwLock::new(Arc::new(Hooks::default())),
            lobby: OnceCell::new(),
            roles: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
            sweeper: std::sync::OnceLock::new(),
            live: tokio::sync::broadcast::channel(LIVE_CAPACITY).0,
            remote: std::sync::OnceLock::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// An engine on a private in-memory SQLite database, migrated: for tests, examples and
    /// programs that keep nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the database cannot be set up.
    pub async fn in_memory() -> Result<Self> {
        let config =
            DatabaseConfig { url: "sqlite::memory:".to_owned(), ..DatabaseConfig::default() };
        let engine = Self::new(Database::new(&config)?, MessagingConfig::default());
        engine.migrate().await?;
        Ok(engine)
    }

    /// Every event from now on, in the order the engine notifies them: what the real-time
    /// gateway delivers from. A receiver more than 65,536 events behind is told it lagged
    /// (`RecvError::Lagged`) and must catch up from the store; events are not kept for
    /// anyone when nobody receives.
    pub fn live(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::Event>> {
        self.inner().live.subscribe()
    }

    /// Creates or updates the messaging tables.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when a migration fails.
    pub async fn migrate(&self) -> Result<()> {
        self.inner.db.migrate(&[&MIGRATIONS]).await?;
        Ok(())
    }

    /// The engine's config.
    pub fn config(&self) -> &MessagingConfig {
        &self.inner.config
    }

    /// The database the engine stores in.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// Runs `handler` after each event of `kind` (see [`crate::hooks`]): the original
    /// engine's `on(event, callback)`. Parse a hook name with `"on_connect".parse()`.
    pub fn on<F, Fut>(&self, kind: EventKind, handler: F)
    where
        F: Fn(Arc<crate::Event>, Engine) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let count = self.hooks().listener_count();
        let mut set = HookSet::default();
        set.on(kind, format!("{}#{count}", kind.name()), handler);
        self.install(set);
    }

    /// Runs `handler` on every message and edit before it is stored (see
    /// [`HookSet::before_message`]).
    pub fn before_message<F, Fut>(&self, order: i32, name: impl Into<String>, handler: F)
    where
        F: Fn(crate::Outgoing, Engine) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<crate::Decision, HookError>> + Send + 'static,
    {
        let mut set = HookSet::default();
        set.before_message(order, name, handler);
        self.install(set);
    }

    /// Adds every hook of `set`.
    pub fn install(&self, set: HookSet) {
        if let Ok(mut hooks) = self.inner.hooks.write() {
            *hooks = Arc::new(hooks.with(set, &self.inner.limits));
        }
    }

    pub(crate) fn hooks(&self) -> Arc<Hooks> {
        self.inner.hooks.read().map(|hooks| Arc::clone(&hooks)).unwrap_or_default()
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) async fn conn(&self) -> Result<xcore_db::Conn> {
        Ok(self.inner.db.get().await?)
    }
}

/// Checks `text` is 1 to `max` characters, not all blank: for names.
pub(crate) fn check_name(field: &'static str, text: &str, max: usize) -> Result<()> {
    let count = text.chars().count();
    if count == 0 || count > max || text.chars().all(char::is_whitespace) {
        return Err(Error::invalid(field, format!("must be 1 to {max} characters, not all blank")));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}
