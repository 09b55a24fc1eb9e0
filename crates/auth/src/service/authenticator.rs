//! [`TokenAuthenticator`], the [`Authenticate`] implementation the request
//! [`Gate`](xcore_middleware::Gate) uses, with its two node-local caches: access tokens
//! already verified, and sessions ended on this node.
//!
//! Access tokens are stateless, so authenticating a request needs no database; what a
//! signature cannot say is that a session has ended since the token was issued. The flows
//! of [`Auth`](super::Auth) record every session they end in [`Revoked`], and the
//! authenticator asks it on every request.

use std::sync::Arc;
use std::time::Duration;

use xcore_middleware::{Authenticate, CurrentUser, Rejection};

use crate::token::{AccessTokens, TokenError};

use super::unix_now;

/// Sessions ended on this node whose access tokens may still be current: checked on every
/// request, and forgotten once such tokens have expired anyway.
#[derive(Clone)]
pub(super) struct Revoked {
    sessions: moka::sync::Cache<String, ()>,
}

impl Revoked {
    pub(super) fn new(access_ttl: Duration) -> Self {
        let sessions = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(access_ttl + Duration::from_secs(1))
            .build();
        Self { sessions }
    }

    pub(super) fn insert(&self, session: &str) {
        self.sessions.insert(session.to_owned(), ());
    }

    fn contains(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }
}

/// Access tokens already verified on this node, with the caller they stand for, until
/// they expire.
///
/// A client sends the same access token with every request for its lifetime; checking
/// its signature and claims once instead of on every request takes the cost of
/// authenticating from microseconds to a hash lookup. Only tokens that passed every check
/// are kept, under the whole token (so a token differing in any byte is verified afresh),
/// each until its own `exp`. Whether its session has ended is still asked on every use.
#[derive(Clone)]
pub(super) struct VerifiedTokens {
    tokens: moka::sync::Cache<Box<str>, Arc<Verified>, foldhash::fast::RandomState>,
}

struct Verified {
    user: CurrentUser,
    /// The token's `exp`, in seconds since the Unix epoch.
    expires_at: u64,
}

/// Tokens kept at most: a few MiB.
const VERIFIED_TOKENS: u64 = 10_000;

impl VerifiedTokens {
    /// Kept at most `ttl` (the access-token lifetime): a token first seen late in its life
    /// is held longer than it lives, and [`get`](Self::get) checks its own expiry. A
    /// fixed lifetime and plain LRU eviction keep inserting cheap (no per-entry timer, no
    /// frequency sketch); recency is what predicts a token's next use anyway.
    pub(super) fn new(ttl: Duration) -> Self {
        let tokens = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_TOKENS)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_live(ttl)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self { tokens }
    }

    /// The caller `token` stands for, if it was verified and has not expired.
    fn get(&self, token: &str) -> Option<CurrentUser> {
        let verified = self.tokens.get(token)?;
        (verified.expires_at > unix_now()).then(|| verified.user.clone())
    }

    fn insert(&self, token: &str, user: CurrentUser, expires_at: u64) {
        self.tokens.insert(token.into(), Arc::new(Verified { user, expires_at }));
    }
}

/// Authenticates callers by their access tokens: the signature, issuer, audience and
/// lifetime (once per token and node), and that the session was not ended on this node
/// (on every request).
#[derive(Clone)]
pub struct TokenAuthenticator {
    tokens: AccessTokens,
    revoked: Revoked,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthenticator").field("tokens", &self.tokens).finish_non_exhaustive()
    }
}

impl TokenAuthenticator {
    /// An authenticator sharing `revoked` and `verified` with the [`Auth`](super::Auth)
    /// that made it, so the sessions its flows end are refused here.
    pub(super) fn new(tokens: AccessTokens, revoked: Revoked, verified: VerifiedTokens) -> Self {
        Self { tokens, revoked, verified }
    }

    /// Verifies `token` in full, and keeps the result.
    fn verify(&self, token: &str) -> Result<CurrentUser, Rejection> {
        let claims = self.tokens.verify(token).map_err(|error| match error {
            TokenError::Expired => Rejection::Expired,
            error => {
                tracing::debug!(%error, "access token refused");
                Rejection::Invalid
            }
        })?;
        let user_id = claims.sub.parse().map_err(|_| Rejection::Invalid)?;
        let user = CurrentUser { user_id, session_id: claims.sid, roles: claims.roles };
        self.verified.insert(token, user.clone(), claims.exp);
        Ok(user)
    }
}

impl Authenticate for TokenAuthenticator {
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        let user = match self.verified.get(token) {
            Some(user) => user,
            None => self.verify(token)?,
        };
        if self.revoked.contains(&user.session_id) {
            return Err(Rejection::Revoked);
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(ttl_secs: u64) -> TokenAuthenticator {
        let tokens = AccessTokens::hs256(&[9; 32], "xcore", "xcore", ttl_secs).unwrap();
        TokenAuthenticator {
            tokens,
            revoked: Revoked::new(Duration::from_secs(ttl_secs)),
            verified: VerifiedTokens::new(Duration::from_secs(ttl_secs)),
        }
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_never_beyond() {
        let auth = authenticator(1);
        let (token, _) = auth.tokens.issue("7", "s1", &[], unix_now()).unwrap();
        assert_eq!(auth.authenticate(&token).unwrap().user_id, 7);
        assert!(auth.verified.get(&token).is_some(), "kept after the first use");
        // One byte changed is another token: verified afresh, and refused.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(auth.authenticate(&tampered), Err(Rejection::Invalid));
        assert!(auth.verified.get(&tampered).is_none());
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(auth.authenticate(&token), Err(Rejection::Expired));
    }

    #[test]
    fn an_ended_session_is_refused_even_with_a_remembered_token() {
        let auth = authenticator(60);
        let (token, _) = auth.tokens.issue("7", "s1", &[], unix_now()).unwrap();
        assert!(auth.authenticate(&token).is_ok());
        auth.revoked.insert("s1");
        assert_eq!(auth.authenticate(&token), Err(Rejection::Revoked));
    }
}
