//! Cache errors.

use std::sync::Arc;

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a loader passed to `get_or_insert_with` failed with, shared by every caller that
/// waited for it.
pub type LoadError = Arc<dyn std::error::Error + Send + Sync>;

/// What a cache operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cache key `{0}`: a key is 1 to {max} bytes", max = crate::MAX_KEY_LEN)]
    InvalidKey(String),
    #[error("invalid cache namespace `{0}`: use 1 to 64 letters, digits, `_`, `-` or `.`")]
    InvalidNamespace(String),
    #[error("a time to live must be longer than zero")]
    ZeroTtl,
    #[error("`{key}` holds a value of type {stored}, not {requested}")]
    WrongType { key: String, stored: &'static str, requested: &'static str },
    #[error("cannot encode the value of `{key}`: {source}")]
    Encode { key: String, source: serde_json::Error },
    #[error("cannot decode the value of `{key}` as a {requested}: {source}")]
    Decode { key: String, requested: &'static str, source: serde_json::Error },
    #[error("the cache server is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    #[error("the `{0}` cache backend must be created inside a Tokio runtime")]
    NoRuntime(&'static str),
    #[error("`cache.url` is required with the `{0}` backend")]
    MissingUrl(&'static str),
    #[error("`{url}` is not a Redis URL such as `redis://127.0.0.1:6379`: {source}")]
    InvalidUrl { url: String, source: redis::RedisError },
    #[error("loading `{key}` failed: {source}")]
    Load { key: String, source: LoadError },
}
