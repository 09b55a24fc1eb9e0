//! Helpers for tests that need a real database, shared by every crate's test suite.

use diesel_async::SimpleAsyncConnection;

use crate::{Database, DatabaseConfig};

/// The variable naming the PostgreSQL server tests may use; CI always sets it.
pub const POSTGRES_ENV: &str = "XCORE_TEST_DATABASE_URL";

/// The URL of a new, empty PostgreSQL database created for one test on the server named by
/// `XCORE_TEST_DATABASE_URL`, or `None` after printing why the test is skipped when the
/// variable is not set.
///
/// # Panics
///
/// When the variable is set but the database cannot be created: a test that was asked to
/// run against PostgreSQL must not silently pass without it.
#[allow(clippy::expect_used, clippy::panic)]
pub async fn fresh_postgres_url(label: &str) -> Option<String> {
    let Ok(base) = std::env::var(POSTGRES_ENV) else {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let name = format!("xcore_test_{label}_{}_{nanos}", std::process::id());
    let admin = Database::new(&DatabaseConfig { url: base.clone(), ..DatabaseConfig::default() })
        .expect("XCORE_TEST_DATABASE_URL is a PostgreSQL URL");
    let mut conn = admin.get().await.expect("PostgreSQL at XCORE_TEST_DATABASE_URL answers");
    crate::with_conn!(conn, c => c.batch_execute(&format!("CREATE DATABASE {name}")).await)
        .expect("the test database can be created");
    let Some((server, _)) = base.rsplit_once('/') else {
        panic!("{POSTGRES_ENV} must end with /<database>");
    };
    Some(format!("{server}/{name}"))
}
