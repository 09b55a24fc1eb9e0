//! The Redis tier: values encoded as JSON under `<namespace>:<key>`.
//!
//! One multiplexed connection (redis' `ConnectionManager`) carries every command and
//! reconnects by itself. Commands fail fast while the server is away (no retry loop in the
//! request path), so a cache outage costs callers a miss, not a stall; state changes are
//! logged once, not per command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ScanOptions};

use crate::{Error, Result};

/// Keys unlinked per command when deleting by prefix.
const UNLINK_BATCH: usize = 500;

/// The Redis store; cloning shares the connection.
#[derive(Clone)]
pub(crate) struct Remote {
    client: redis::Client,
    connection: ConnectionManager,
    /// `<namespace>:`, in front of every key.
    prefix: Arc<str>,
    timeout: Duration,
    /// Whether the last command reached the server; flips are logged.
    reachable: Arc<AtomicBool>,
}

impl Remote {
    /// Prepares the connection without opening it: the server may start while Redis is
    /// away, and connects on first use.
    pub(crate) fn new(client: redis::Client, namespace: &str, timeout: Duration) -> Result<Self> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(0);
        let connection = client.get_connection_manager_lazy(config).map_err(Error::Unavailable)?;
        Ok(Self {
            client,
            connection,
            prefix: Arc::from(format!("{namespace}:")),
            timeout,
            reachable: Arc::new(AtomicBool::new(true)),
        })
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The channel invalidations are published on.
    pub(crate) fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// Records whether the server answered, logging only changes.
    fn note<T>(&self, result: redis::RedisResult<T>) -> Result<T> {
        match result {
            Ok(value) => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("cache: Redis is reachable again");
                }
                Ok(value)
            }
            Err(error) => {
                if is_connection_error(&error) && self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "cache: Redis is unreachable; reads miss and writes fail until it returns");
                }
                Err(Error::Unavailable(error))
            }
        }
    }

    /// The encoded value under `key` and, when `with_ttl`, its remaining time to live (in
    /// the same round trip).
    pub(crate) async fn get(
        &self,
        key: &str,
        with_ttl: bool,
    ) -> Result<Option<(Vec<u8>, Option<Duration>)>> {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        if !with_ttl {
            let result: redis::RedisResult<Option<Vec<u8>>> = connection.get(key).await;
            return Ok(self.note(result)?.map(|value| (value, None)));
        }
        let result: redis::RedisResult<(Option<Vec<u8>>, i64)> =
            redis::pipe().get(&key).pttl(&key).query_async(&mut connection).await;
        let (value, ttl_ms) = self.note(result)?;
        // PTTL answers -1 for a key without expiry and -2 for a missing one.
        let ttl = u64::try_from(ttl_ms).ok().map(Duration::from_millis);
        Ok(value.map(|value| (value, ttl)))
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        let result: redis::RedisResult<()> = command.query_async(&mut connection).await;
        self.note(result)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let mut connection = self.connection.clone();
        let result: redis::RedisResult<usize> = connection.unlink(self.key(key)).await;
        self.note(result).map(drop)
    }

    /// Deletes every key starting with `prefix` (SCAN, then UNLINK in batches).
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut scanning = self.connection.clone();
        let mut deleting = self.connection.clone();
        let options = ScanOptions::default().with_pattern(pattern).with_count(UNLINK_BATCH);
        let scanned: redis::RedisResult<redis::AsyncIter<'_, String>> =
            scanning.scan_options(options).await;
        let mut keys = self.note(scanned)?;
        let mut batch = Vec::with_capacity(UNLINK_BATCH);
        while let Some(key) = keys.next().await {
            batch.push(self.note(key)?);
            if batch.len() == UNLINK_BATCH {
                let result: redis::RedisResult<usize> = deleting.unlink(&batch).await;
                self.note(result)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            let result: redis::RedisResult<usize> = deleting.unlink(&batch).await;
            self.note(result)?;
        }
        Ok(())
    }

    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        let mut connection = self.connection.clone();
        let result: redis::RedisResult<usize> = connection.publish(channel, message).await;
        self.note(result).map(drop)
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        let result: redis::RedisResult<String> =
            redis::cmd("PING").query_async(&mut connection).await;
        self.note(result).map(drop)
    }
}

fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// `text` with Redis glob's special characters escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("app:users:"), "app:users:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
