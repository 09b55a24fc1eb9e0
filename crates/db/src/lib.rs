//! xcore's database layer.
//!
//! One [`Database`] handle over a bounded connection pool, for SQLite (the embedded default,
//! bundled, in WAL mode) or PostgreSQL (native through tokio-postgres, no libpq), chosen by
//! the URL. Queries are diesel queries run through diesel-async, so no database call blocks
//! the async runtime: PostgreSQL is asynchronous on the wire, and SQLite runs on the blocking
//! pool behind `SyncConnectionWrapper`.
//!
//! Every crate that owns tables embeds its migrations for both backends as a
//! [`MigrationSet`] and registers it through [`MigrationsExt`], an extension trait over
//! `xcore_core::AppBuilder`: the pattern by which crates unknown to `xcore-core` add to the
//! builder. In the server the crate is a module like any plugin: [`DatabasePlugin`] reads
//! `[database]`, provides the [`Database`] and applies the migrations at startup.

mod config;
mod database;
mod error;
mod migrations;
mod plugin;
pub mod testing;

pub use config::DatabaseConfig;
pub use database::{Backend, Conn, Database, SqliteConn, redact_url};
pub use diesel_async::AsyncPgConnection;
pub use error::{Error, Result};
pub use migrations::{MigrationSet, MigrationStatus, Migrations, MigrationsExt};
pub use plugin::DatabasePlugin;

/// Runs one block of diesel-async code against whichever backend `conn` is.
///
/// The block is compiled once per backend with `$c` bound to that backend's connection,
/// so one query written with the diesel DSL serves both:
///
/// ```ignore
/// let mut conn = db.get().await?;
/// let rows = xcore_db::with_conn!(conn, c => table.load::<Row>(c).await)?;
/// ```
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match &mut $conn {
            $crate::Conn::Sqlite($c) => {
                let $c: &mut $crate::SqliteConn = &mut *$c;
                $body
            }
            $crate::Conn::Postgres($c) => {
                let $c: &mut $crate::AsyncPgConnection = &mut *$c;
                $body
            }
        }
    };
}
