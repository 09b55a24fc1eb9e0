//! [`Namespace`]: a view of a [`Cache`] whose keys all start with `<name>:`, and
//! [`Cache::namespace`], which makes one.
//!
//! A namespace only prefixes keys and forwards to its cache, so it shares the cache's
//! tiers, coherence and counters; what it adds is [`Namespace::clear`], a prefix delete
//! that empties it on every node.

use std::sync::Arc;
use std::time::Duration;

use crate::names::check_namespace;
use crate::{Cache, Result, Value};

impl Cache {
    /// A view of this cache whose keys all start with `<name>:`, cleared as a whole by
    /// [`Namespace::clear`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`](crate::Error::InvalidNamespace) unless `name` is 1 to 64
    /// letters, digits, `_`, `-`, `.`.
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        check_namespace(name)?;
        Ok(Namespace { cache: self.clone(), prefix: Arc::from(format!("{name}:")) })
    }
}

/// A view of a [`Cache`] whose keys start with `<name>:`.
#[derive(Debug, Clone)]
pub struct Namespace {
    cache: Cache,
    prefix: Arc<str>,
}

impl Namespace {
    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// See [`Cache::get`].
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    pub async fn get<T: Value>(&self, key: &str) -> Result<Option<T>> {
        self.cache.get(&self.key(key)).await
    }

    /// See [`Cache::set`].
    ///
    /// # Errors
    ///
    /// As [`Cache::set`].
    pub async fn set<T: Value>(&self, key: &str, value: T) -> Result<()> {
        self.cache.set(&self.key(key), value).await
    }

    /// See [`Cache::set_with_ttl`].
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with_ttl`].
    pub async fn set_with_ttl<T: Value>(&self, key: &str, value: T, ttl: Duration) -> Result<()> {
        self.cache.set_with_ttl(&self.key(key), value, ttl).await
    }

    /// See [`Cache::delete`].
    ///
    /// # Errors
    ///
    /// As [`Cache::delete`].
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.cache.delete(&self.key(key)).await
    }

    /// See [`Cache::get_or_insert_with`].
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_insert_with`].
    pub async fn get_or_insert_with<T, F, Fut, E>(&self, key: &str, loader: F) -> Result<T>
    where
        T: Value,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.cache.get_or_insert_with(&self.key(key), loader).await
    }

    /// Removes every value of this namespace, on every node.
    ///
    /// # Errors
    ///
    /// As [`Cache::delete_prefix`].
    pub async fn clear(&self) -> Result<()> {
        self.cache.delete_prefix(&self.prefix).await
    }
}
