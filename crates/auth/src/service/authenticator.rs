//! [`TokenAuthenticator`], the [`Authenticate`] implementation the request
//! [`Gate`](xcore_middleware::Gate) uses, with its two node-local caches: access tokens
//! already verified, and the sessions and accounts ended.
//!
//! Access tokens are stateless, so authenticating a request needs no database; what a
//! signature cannot say is that a session has ended since the token was issued. The flows
//! of [`Auth`](super::Auth) record every session they end in [`Revoked`] and in the
//! database's revocation log, every node follows that log into its own [`Revoked`] (see
//! [`crate::revocations`]), and the authenticator asks it on every request.

use std::sync::Arc;
use std::time::Duration;

use xcore_middleware::{Authenticate, CurrentUser, Rejection};

use crate::token::{AccessTokens, TokenError};

use super::unix_now;

/// Sessions and accounts ended whose access tokens may still be current: checked on every
/// request, and each forgotten once such tokens have expired anyway.
#[derive(Clone)]
pub(super) struct Revoked {
    sessions: moka::sync::Cache<String, ()>,
    /// Accounts whose every session ended, with the Unix time at or before which their
    /// tokens were issued.
    accounts: moka::sync::Cache<i64, u64>,
}

impl Revoked {
    pub(super) fn new(access_ttl: Duration) -> Self {
        let ttl = access_ttl + Duration::from_secs(1);
        let sessions = moka::sync::Cache::builder().max_capacity(1_000_000).time_to_live(ttl);
        let accounts = moka::sync::Cache::builder().max_capacity(1_000_000).time_to_live(ttl);
        Self { sessions: sessions.build(), accounts: accounts.build() }
    }

    pub(super) fn insert(&self, session: &str) {
        self.sessions.insert(session.to_owned(), ());
    }

    /// Refuses the tokens of `user_id` issued at or before `not_before`.
    pub(super) fn insert_account(&self, user_id: i64, not_before: u64) {
        let entry = self.accounts.entry(user_id);
        entry.and_upsert_with(|current| {
            current.map_or(not_before, |current| (*current.value()).max(not_before))
        });
    }

    /// Applies a row of the revocation log.
    pub(super) fn apply(&self, row: &crate::revocations::Revocation) {
        match (&row.session, row.not_before) {
            (Some(session), _) => self.insert(session),
            (None, Some(not_before)) => {
                self.insert_account(row.user_id, u64::try_from(not_before).unwrap_or(0));
            }
            (None, None) => {}
        }
    }

    fn refuses(&self, user: &CurrentUser, issued_at: u64) -> bool {
        self.sessions.contains_key(&user.session_id)
            || self.accounts.get(&user.user_id).is_some_and(|not_before| issued_at <= not_before)
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
    /// The token's `iat`, in seconds since the Unix epoch.
    issued_at: u64,
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

    /// The caller `token` stands for and when it was issued, if it was verified and has
    /// not expired.
    fn get(&self, token: &str) -> Option<(CurrentUser, u64)> {
        let verified = self.tokens.get(token)?;
        (verified.expires_at > unix_now()).then(|| (verified.user.clone(), verified.issued_at))
    }

    fn insert(&self, token: &str, verified: Verified) {
        self.tokens.insert(token.into(), Arc::new(verified));
    }
}

/// Authenticates callers by their access tokens: the signature, issuer, audience and
/// lifetime (once per token and node), and that neither the session nor the account was
/// ended (on every request).
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

    /// Verifies `token` in full, and keeps the result: the caller and when the token was
    /// issued.
    fn verify(&self, token: &str) -> Result<(CurrentUser, u64), Rejection> {
        let claims = self.tokens.verify(token).map_err(|error| match error {
            TokenError::Expired => Rejection::Expired,
            error => {
                tracing::debug!(%error, "access token refused");
                Rejection::Invalid
            }
        })?;
        let user_id = claims.sub.parse().map_err(|_| Rejection::Invalid)?;
        let user = CurrentUser { user_id, session_id: claims.sid, roles: claims.roles };
        let verified =
            Verified { user: user.clone(), issued_at: claims.iat, expires_at: claims.exp };
        self.verified.insert(token, verified);
        Ok((user, claims.iat))
    }
}

impl Authenticate for TokenAuthenticator {
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        let (user, issued_at) = match self.verified.get(token) {
            Some(known) => known,
            None => self.verify(token)?,
        };
        if self.revoked.refuses(&user, issued_at) {
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

    #[test]
    fn an_ended_account_refuses_the_tokens_issued_until_then_only() {
        let auth = authenticator(60);
        let now = unix_now();
        let (old, _) = auth.tokens.issue("7", "s1", &[], now - 5).unwrap();
        let (other, _) = auth.tokens.issue("8", "s2", &[], now - 5).unwrap();
        assert!(auth.authenticate(&old).is_ok());
        auth.revoked.insert_account(7, now - 3);
        // A later row with an earlier time does not move the point back.
        auth.revoked.insert_account(7, now - 10);
        let (new, _) = auth.tokens.issue("7", "s3", &[], now - 2).unwrap();
        assert_eq!(auth.authenticate(&old), Err(Rejection::Revoked));
        assert!(auth.authenticate(&new).is_ok(), "issued after the account ended");
        assert!(auth.authenticate(&other).is_ok(), "another account");
    }
}
