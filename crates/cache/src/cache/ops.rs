//! Reads and writes: [`Cache::get`], [`Cache::set`], [`Cache::set_with_ttl`],
//! [`Cache::delete`], [`Cache::delete_prefix`], and the tier-walking steps under them.
//!
//! A read tries the local tier (when it may be trusted) then Redis, and keeps what Redis
//! returned locally only if the key's change counter did not move meanwhile. A write goes
//! to Redis first, so a failure leaves no local copy that other nodes lack, then tells the
//! other nodes to drop theirs.

use std::time::Duration;

use super::Cache;
use crate::coherence::{Invalidation, Scope};
use crate::epoch::Mark;
use crate::local::Entry;
use crate::names::check_key;
use crate::remote::Remote;
use crate::{Error, Result, Value};

impl Cache {
    /// The value under `key`, or `None` when there is none (or Redis is unreachable).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::WrongType`] or [`Error::Decode`] when the stored
    /// value is not a `T`.
    pub async fn get<T: Value>(&self, key: &str) -> Result<Option<T>> {
        check_key(key)?;
        let found = self.lookup(key).await?;
        let counter =
            if found.is_some() { &self.inner.metrics.hits } else { &self.inner.metrics.misses };
        counter.increment(1);
        Ok(found)
    }

    /// Stores `value` under `key` for the default time to live.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::Encode`], and [`Error::Unavailable`] when Redis is
    /// unreachable (the value is then not stored anywhere).
    pub async fn set<T: Value>(&self, key: &str, value: T) -> Result<()> {
        check_key(key)?;
        self.store(key, value, self.inner.default_ttl, None).await
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set), and [`Error::ZeroTtl`].
    pub async fn set_with_ttl<T: Value>(&self, key: &str, value: T, ttl: Duration) -> Result<()> {
        check_key(key)?;
        if ttl.is_zero() {
            return Err(Error::ZeroTtl);
        }
        self.store(key, value, Some(ttl), None).await
    }

    /// Removes the value under `key`, on every node.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::Unavailable`] when Redis is unreachable.
    pub async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.invalidate(Scope::Key(key.to_owned())).await
    }

    /// Removes every value whose key starts with `prefix`, on every node; an empty prefix
    /// empties the cache (within its configured namespace). With Redis this walks the
    /// whole database (`SCAN`): fine for maintenance and small databases, not for a
    /// request path on a large shared one, where deleting known keys is the way.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when Redis is unreachable.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.invalidate(Scope::Prefix(prefix.to_owned())).await
    }

    /// The value under `key`, without counting a hit or a miss.
    pub(super) async fn lookup<T: Value>(&self, key: &str) -> Result<Option<T>> {
        if let Some(value) =
            self.usable_local().map(|local| local.get::<T>(key)).transpose()?.flatten()
        {
            return Ok(Some(value));
        }
        let Some(remote) = &self.inner.remote else { return Ok(None) };
        let mark = self.inner.epochs.mark(key);
        let keep = self.usable_local().is_some();
        let Ok(Some((bytes, ttl))) = remote.get(key, keep).await else { return Ok(None) };
        let value: T = serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            key: key.to_owned(),
            requested: std::any::type_name::<T>(),
            source,
        })?;
        if let Some(local) = self.usable_local() {
            // Kept only if no invalidation arrived meanwhile: it could concern this value.
            if !self.inner.epochs.changed_since(key, mark) {
                local.insert(key.to_owned(), Entry::new(value.clone(), bytes.len(), ttl));
            }
        }
        Ok(Some(value))
    }

    /// Stores `value`: a write, or with `since` the fill of a miss, which is dropped if the
    /// key was written or deleted since `since` (and, not being a write, moves no counter).
    pub(super) async fn store<T: Value>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        since: Option<Mark>,
    ) -> Result<()> {
        let encoded = serde_json::to_vec(&value)
            .map_err(|source| Error::Encode { key: key.to_owned(), source })?;
        let epochs = &self.inner.epochs;
        let mark = epochs.mark(key);
        if since.is_some_and(|since| since != mark) {
            tracing::debug!(key, "cache: value loaded during a write not stored");
            return Ok(());
        }
        if let Some(remote) = &self.inner.remote {
            if let Err(error) = remote.set(key, &encoded, ttl).await {
                if let Some(local) = &self.inner.local {
                    local.remove(key);
                }
                return Err(error);
            }
            self.publish(remote, Scope::Key(key.to_owned())).await;
        }
        if let Some(local) = self.usable_local() {
            if epochs.changed_since(key, mark) {
                local.remove(key);
            } else {
                local.insert(key.to_owned(), Entry::new(value, encoded.len(), ttl));
            }
        }
        if since.is_none() {
            epochs.key_changed(key);
        }
        Ok(())
    }

    async fn invalidate(&self, scope: Scope) -> Result<()> {
        scope.record(&self.inner.epochs);
        if let Some(local) = &self.inner.local {
            scope.apply(local);
        }
        if let Some(remote) = &self.inner.remote {
            match &scope {
                Scope::Key(key) => remote.delete(key).await?,
                Scope::Prefix(prefix) => remote.delete_prefix(prefix).await?,
            }
            self.publish(remote, scope).await;
        }
        Ok(())
    }

    /// Tells the other nodes to drop their copies. A failed publish needs no retry: Redis
    /// is then unreachable for the other nodes' subscriptions too, and a node empties its
    /// local tier when its subscription comes back.
    async fn publish(&self, remote: &Remote, scope: Scope) {
        let Some(coherence) = &self.inner.coherence else { return };
        let message = Invalidation { node: coherence.node.clone(), scope };
        let Ok(message) = serde_json::to_string(&message) else { return };
        if let Err(error) = remote.publish(&coherence.channel, &message).await {
            tracing::debug!(%error, "cache: invalidation not published");
        }
    }
}
