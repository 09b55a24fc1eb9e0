//! The `[database]` config section.

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

/// The `[database]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://<path>` (relative to the working directory; `sqlite:///abs/path` for an
    /// absolute one; `sqlite::memory:` for a private in-memory database), or
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Most connections held open at once.
    pub pool_size: usize,
    /// How long a request waits for a free connection (or a new one) before failing.
    pub acquire_timeout_secs: u64,
    /// How long SQLite waits on a locked database before answering "busy".
    pub busy_timeout_ms: u64,
}

impl DatabaseConfig {
    /// Checks the URL without opening anything.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedUrl`](crate::Error::UnsupportedUrl) for a URL of another scheme.
    pub fn check_url(&self) -> crate::Result<()> {
        crate::database::Target::parse(&self.url).map(|_| ())
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/xcore.db".to_owned(),
            pool_size: 8,
            acquire_timeout_secs: 5,
            busy_timeout_ms: 5000,
        }
    }
}

impl Section for DatabaseConfig {
    fn validate(&self, problems: &mut Problems) {
        if let Err(error) = self.check_url() {
            problems.add("url", error.to_string());
        }
        problems.check(self.pool_size > 0, "pool_size", "must be at least 1");
        problems.check(self.acquire_timeout_secs > 0, "acquire_timeout_secs", "must be at least 1");
    }
}
