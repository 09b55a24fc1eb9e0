//! The `[cache]` config section.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

use crate::{Error, Result};

/// The `[cache]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Where values live: `memory` (this process), `redis` (shared), or `tiered` (this
    /// process in front of Redis, kept coherent across nodes).
    pub backend: BackendKind,
    /// The Redis server, `redis://[user:password@]host:port[/db]`; required by `redis` and
    /// `tiered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Prefix of every key this server writes to Redis, so several applications can share
    /// one server.
    pub namespace: String,
    /// Most bytes the in-process tier holds (keys and encoded values); least useful
    /// entries are evicted beyond it.
    pub max_bytes: u64,
    /// Time to live of entries stored without one; `0` keeps them until evicted or deleted.
    pub default_ttl_secs: u64,
    /// Longest a Redis command may take before it counts as failed.
    pub timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Memory,
            url: None,
            namespace: "xcore".to_owned(),
            max_bytes: 64 * 1024 * 1024,
            default_ttl_secs: 60,
            timeout_ms: 250,
        }
    }
}

/// The cache backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Memory,
    Redis,
    Tiered,
}

impl BackendKind {
    /// The name used in config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Tiered => "tiered",
        }
    }
}

impl Section for CacheConfig {
    /// Checks the settings without connecting to anything.
    fn validate(&self, problems: &mut Problems) {
        if self.backend != BackendKind::Memory
            && let Err(error) = self.redis_client()
        {
            problems.add("url", error.to_string());
        }
        problems.check(
            crate::check_namespace(&self.namespace).is_ok(),
            "namespace",
            "use 1 to 64 letters, digits, `_`, `-` or `.`",
        );
        problems.check(
            self.max_bytes > 0 || self.backend == BackendKind::Redis,
            "max_bytes",
            "must be at least 1",
        );
        problems.check(self.timeout_ms > 0, "timeout_ms", "must be at least 1");
    }
}

impl CacheConfig {
    /// The default time to live, `None` for no expiry.
    pub fn default_ttl(&self) -> Option<Duration> {
        (self.default_ttl_secs > 0).then(|| Duration::from_secs(self.default_ttl_secs))
    }

    pub(crate) fn redis_client(&self) -> Result<redis::Client> {
        let url = self.url.as_deref().ok_or(Error::MissingUrl(self.backend.as_str()))?;
        redis::Client::open(url)
            .map_err(|source| Error::InvalidUrl { url: crate::redact_url(url), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(config: &CacheConfig) -> Vec<String> {
        xcore_core::config::problems(config).into_iter().map(|(key, _)| key).collect()
    }

    #[test]
    fn default_is_valid_and_in_memory() {
        let config = CacheConfig::default();
        assert_eq!(config.backend, BackendKind::Memory);
        assert!(keys(&config).is_empty());
        assert_eq!(config.default_ttl(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn problems_name_their_key() {
        let check = |config: CacheConfig, expected: &[&str]| assert_eq!(keys(&config), expected);
        check(CacheConfig { backend: BackendKind::Redis, ..CacheConfig::default() }, &["url"]);
        check(
            CacheConfig {
                backend: BackendKind::Tiered,
                url: Some("http://localhost".to_owned()),
                ..CacheConfig::default()
            },
            &["url"],
        );
        check(
            CacheConfig {
                namespace: "a b".to_owned(),
                max_bytes: 0,
                timeout_ms: 0,
                ..CacheConfig::default()
            },
            &["namespace", "max_bytes", "timeout_ms"],
        );
        check(
            CacheConfig {
                backend: BackendKind::Redis,
                url: Some("redis://127.0.0.1:6379/2".to_owned()),
                max_bytes: 0,
                ..CacheConfig::default()
            },
            &[],
        );
    }

    #[test]
    fn urls_in_errors_hide_passwords() {
        let config = CacheConfig {
            backend: BackendKind::Redis,
            url: Some("redis://user:hunter2@[::1".to_owned()),
            ..CacheConfig::default()
        };
        let message = xcore_core::config::problems(&config).remove(0).1;
        assert!(!message.contains("hunter2"), "{message}");
    }
}
