//! [`Cache::get_or_insert_with`]: a read that, on a miss, loads the value once however
//! many callers missed it together.
//!
//! The single-flight map itself is [`crate::flight`]; this is the glue that makes a load
//! safe to store. The key's change counter is marked before the loader runs, and the
//! value is stored only if no write or delete of the key happened meanwhile, since the
//! loader may have read the source before that change.

use super::Cache;
use crate::{Error, LoadError, Result, Value};

impl Cache {
    /// The value under `key`; on a miss, runs `loader`, stores what it returns for the
    /// default time to live and returns it. Concurrent misses of one key run `loader`
    /// once and all get its result. A failed load is returned to every waiter and not
    /// stored; a value that cannot be stored (Redis away) is still returned, and so is a
    /// value loaded while this cache saw a write or a delete (which may have made it
    /// outdated), without being stored.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] with the loader's error, and the errors of [`get`](Self::get).
    pub async fn get_or_insert_with<T, F, Fut, E>(&self, key: &str, loader: F) -> Result<T>
    where
        T: Value,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let load = || async {
            // A load that finished just before this one may have stored the value.
            if let Ok(Some(value)) = self.lookup::<T>(key).await {
                return Ok(value);
            }
            self.inner.metrics.loads.increment(1);
            let since = self.inner.epochs.mark(key);
            match loader().await {
                Ok(value) => {
                    let ttl = self.inner.default_ttl;
                    if let Err(error) = self.store(key, value.clone(), ttl, Some(since)).await {
                        tracing::debug!(key, %error, "cache: loaded value not stored");
                    }
                    Ok(value)
                }
                Err(error) => {
                    self.inner.metrics.load_errors.increment(1);
                    Err(LoadError::from(error.into()))
                }
            }
        };
        self.inner
            .flights
            .run(key, load)
            .await
            .map_err(|source| Error::Load { key: key.to_owned(), source })
    }
}
