//! The names a cache deals in, checked once at its edge: keys ([`MAX_KEY_LEN`]),
//! namespaces, and Redis URLs, whose password is redacted before one appears in an error.
//!
//! Every entry point checks its key or namespace here first, so a bad one is refused with
//! the same error whichever backend is in use.

use crate::{Error, Result};

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        let shown: String = key.chars().take(64).collect();
        return Err(Error::InvalidKey(shown));
    }
    Ok(())
}

pub(crate) fn check_namespace(name: &str) -> Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid { Ok(()) } else { Err(Error::InvalidNamespace(name.to_owned())) }
}

/// `url` with its password, if any, replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}
