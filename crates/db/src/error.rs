//! Database errors.

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a database operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "unsupported database URL `{0}`: use `sqlite://<path>`, `sqlite::memory:` or `postgres://…`"
    )]
    UnsupportedUrl(String),
    #[error("the connection pool could not be created: {0}")]
    Pool(String),
    #[error("no database connection within {0} s")]
    AcquireTimeout(u64),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migration set `{set}` failed: {source}")]
    Migration { set: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("migration version `{version}` appears in both `{first}` and `{second}`")]
    DuplicateMigration { version: String, first: &'static str, second: &'static str },
    #[error("the blocking task running the database work failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
