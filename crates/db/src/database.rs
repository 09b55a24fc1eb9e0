//! The pooled [`Database`] handle.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::{ConnectionError, SqliteConnection};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use xcore_core::files;

use crate::{DatabaseConfig, Error, Result};

/// An SQLite connection usable from async code: diesel's synchronous connection run on the
/// blocking thread pool.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Which database a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pooled connection of either backend; run queries on it with
/// [`with_conn!`](crate::with_conn).
// A checked-out connection lives briefly on one stack; boxing the larger variant would
// cost an allocation on every checkout for no benefit.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Sqlite(Object<SqliteConn>),
    Postgres(Object<AsyncPgConnection>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Conn::Sqlite",
            Self::Postgres(_) => "Conn::Postgres",
        })
    }
}

enum Pools {
    Sqlite(Pool<SqliteConn>),
    Postgres(Pool<AsyncPgConnection>),
}

/// Where the data lives, parsed from the configured URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A file path, or `:memory:`.
    Sqlite(String),
    Postgres(String),
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if url == "sqlite::memory:" {
            Ok(Self::Sqlite(":memory:".to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://").filter(|path| !path.is_empty()) {
            Ok(Self::Sqlite(path.to_owned()))
        } else {
            Err(Error::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// SQLite settings applied to every new connection: waiting on a lock instead of failing,
/// write-ahead logging so readers do not block the writer, enforced foreign keys. The wait
/// comes first: setting the journal mode reads the file, which another connection may have
/// locked (the last one of a stopping process does while it checkpoints).
fn sqlite_pragmas(busy_timeout_ms: u64) -> String {
    format!(
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    )
}

/// A handle to the application's database: cheap to clone, shared by every crate.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    pools: Pools,
    target: Target,
    acquire_timeout: Duration,
}

impl Database {
    /// Creates the pool. Connections are opened on first use, so this succeeds even when
    /// the database is down; [`ping`](Self::ping) tells whether it is reachable.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedUrl`] for a URL of another scheme, [`Error::Pool`] when the pool
    /// cannot be set up.
    pub fn new(config: &DatabaseConfig) -> Result<Self> {
        let target = Target::parse(&config.url)?;
        let busy_timeout_ms = config.busy_timeout_ms;
        let pools = match &target {
            Target::Sqlite(path) => {
                let mut setup = ManagerConfig::<SqliteConn>::default();
                let warned = Arc::new(AtomicBool::new(false));
                setup.custom_setup = Box::new(move |path| {
                    let (path, warned) = (path.to_owned(), Arc::clone(&warned));
                    Box::pin(async move {
                        prepare_sqlite_file(&path, &warned)?;
                        let mut conn = SqliteConn::establish(&path).await?;
                        conn.batch_execute(&sqlite_pragmas(busy_timeout_ms))
                            .await
                            .map_err(ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    })
                });
                // Every connection to `:memory:` is a database of its own: keep one.
                let size = if path == ":memory:" { 1 } else { config.pool_size.max(1) };
                let manager = AsyncDieselConnectionManager::new_with_config(path, setup);
                Pools::Sqlite(
                    Pool::builder(manager)
                        .max_size(size)
                        .build()
                        .map_err(|error| Error::Pool(error.to_string()))?,
                )
            }
            Target::Postgres(url) => {
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
                Pools::Postgres(
                    Pool::builder(manager)
                        .max_size(config.pool_size.max(1))
                        .build()
                        .map_err(|error| Error::Pool(error.to_string()))?,
                )
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pools,
                target,
                acquire_timeout: Duration::from_secs(config.acquire_timeout_secs),
            }),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.inner.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }

    /// A connection from the pool, opening one if none is idle and the pool has room.
    ///
    /// # Errors
    ///
    /// [`Error::AcquireTimeout`] when no connection is free within the configured time,
    /// [`Error::Connect`] when a new connection cannot be opened.
    pub async fn get(&self) -> Result<Conn> {
        let timeout = self.inner.acquire_timeout;
        let acquire = async {
            match &self.inner.pools {
                Pools::Sqlite(pool) => pool.get().await.map(Conn::Sqlite).map_err(pool_error),
                Pools::Postgres(pool) => pool.get().await.map(Conn::Postgres).map_err(pool_error),
            }
        };
        tokio::time::timeout(timeout, acquire)
            .await
            .map_err(|_| Error::AcquireTimeout(timeout.as_secs()))?
    }

    /// Checks that the database answers a trivial query.
    ///
    /// # Errors
    ///
    /// The error of acquiring a connection or of the query.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.get().await?;
        crate::with_conn!(conn, c => c.batch_execute("SELECT 1").await)?;
        Ok(())
    }

    /// Connections currently open and idle, for metrics and diagnostics.
    pub fn pool_status(&self) -> (usize, usize) {
        let status = match &self.inner.pools {
            Pools::Sqlite(pool) => pool.status(),
            Pools::Postgres(pool) => pool.status(),
        };
        (status.size, status.available)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

fn pool_error(error: diesel_async::pooled_connection::deadpool::PoolError) -> Error {
    Error::Connect(error.to_string())
}

/// Creates the database file of `path` before SQLite opens it, and its directory if
/// missing, readable by the server's user only. SQLite would create the file with mode
/// 0644 less the umask; its `-wal` and `-shm` files take the mode of the database file, so
/// they are private too. An existing directory or file open to others is reported once
/// per pool (`warned`), not changed.
fn prepare_sqlite_file(
    path: &str,
    warned: &AtomicBool,
) -> std::result::Result<(), ConnectionError> {
    // `file:` URIs go to SQLite as they are; `:memory:` has no file.
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let path = Path::new(path);
    let failed = |what: &Path, error: std::io::Error| {
        ConnectionError::BadConnection(format!("cannot create {}: {error}", what.display()))
    };
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    let dir_access = dir.map(|dir| files::private_dir(dir).map_err(|error| failed(dir, error)));
    let dir_access = dir_access.transpose()?;
    let file_access = files::private_file(path).map_err(|error| failed(path, error))?;
    if !warned.swap(true, Ordering::Relaxed) {
        if let (Some(dir), Some(access)) = (dir, dir_access) {
            files::warn_if_shared(access, dir, "the database's directory");
        }
        files::warn_if_shared(file_access, path, "the database (and its -wal and -shm files)");
    }
    Ok(())
}

/// The URL with any password replaced, for messages and printouts.
pub fn redact_url(url: &str) -> String {
    xcore_core::config::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let check = |url: &str, expected: Option<Target>| {
            assert_eq!(Target::parse(url).ok(), expected, "{url}");
        };
        check("sqlite://data/xcore.db", Some(Target::Sqlite("data/xcore.db".into())));
        check("sqlite:///var/lib/x.db", Some(Target::Sqlite("/var/lib/x.db".into())));
        check("sqlite::memory:", Some(Target::Sqlite(":memory:".into())));
        check("postgres://u@h/d", Some(Target::Postgres("postgres://u@h/d".into())));
        check("mysql://u@h/d", None);
        check("sqlite://", None);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/d"), "postgres://u:***@h:5432/d");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    /// A connection opened while another holds the file's lock (as the last connection of
    /// a stopping process does while it checkpoints) waits for it rather than failing with
    /// "database is locked": the wait is set before the first pragma that reads the file.
    #[tokio::test]
    async fn a_new_sqlite_connection_waits_for_a_lock_held_elsewhere() {
        use diesel::Connection as _;
        use diesel::connection::SimpleConnection as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let mut holder = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        holder
            .batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA locking_mode = EXCLUSIVE; \
                 BEGIN EXCLUSIVE; CREATE TABLE t (x INTEGER); COMMIT;",
            )
            .unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(holder);
        });
        let url = format!("sqlite://{}", path.display());
        let db = Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap();
        db.ping().await.unwrap();
        release.join().unwrap();
    }

    #[tokio::test]
    async fn sqlite_connections_have_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/x.db", dir.path().display());
        let db = Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap();
        db.ping().await.unwrap();
        let mut conn = db.get().await.unwrap();
        let Conn::Sqlite(conn) = &mut conn else { panic!("expected sqlite") };
        let (mode, fk) = conn
            .spawn_blocking(|c| {
                use diesel::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct Mode {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    journal_mode: String,
                }
                #[derive(diesel::QueryableByName)]
                struct Fk {
                    #[diesel(sql_type = diesel::sql_types::Integer)]
                    foreign_keys: i32,
                }
                let mode = diesel::sql_query("PRAGMA journal_mode").get_result::<Mode>(c)?;
                let fk = diesel::sql_query("PRAGMA foreign_keys").get_result::<Fk>(c)?;
                Ok((mode.journal_mode, fk.foreign_keys))
            })
            .await
            .unwrap();
        assert_eq!((mode.as_str(), fk), ("wal", 1));
    }

    /// Hardening, point 10: the database and its `-wal` and `-shm` files hold credentials
    /// and are readable by the server's user only, whatever the umask gave.
    #[tokio::test]
    async fn sqlite_files_and_the_directory_made_for_them_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let url = format!("sqlite://{}/xcore.db", dir.display());
        let db = Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap();
        let mut conn = db.get().await.unwrap();
        crate::with_conn!(conn, c => {
            c.batch_execute("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('secret');").await
        })
        .unwrap();
        // The connection is open, so SQLite keeps its write-ahead log and shared memory.
        for file in ["xcore.db", "xcore.db-wal", "xcore.db-shm"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        assert_eq!(mode(&dir), 0o700);
    }

    #[tokio::test]
    async fn ping_fails_when_postgres_is_unreachable() {
        let config = DatabaseConfig {
            url: "postgres://nobody@127.0.0.1:1/none".into(),
            acquire_timeout_secs: 2,
            ..DatabaseConfig::default()
        };
        let db = Database::new(&config).unwrap();
        assert!(db.ping().await.is_err());
    }
}
