//! Sessions: chains of refresh tokens, rotated on every use.
//!
//! A login starts a session: a family id and its first refresh token. Every refresh
//! revokes the token it presents and issues the next one in the same family. A token that
//! was already rotated or revoked and comes back means it was copied: the whole family is
//! revoked, so the thief and the legitimate client both have to log in again (OAuth 2.0
//! Security BCP, refresh token rotation). Rotation claims the old token with a conditional
//! update, so two concurrent uses of one token cannot both succeed.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use xcore_db::{Database, with_conn};

use crate::refresh;
use crate::token::TokenError;

diesel::table! {
    auth_refresh_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        family -> Text,
        token_hash -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        replaced_by -> Nullable<BigInt>,
    }
}

/// What refreshing can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The token is unknown, expired or revoked (`invalid_token`).
    #[error("the refresh token is not valid")]
    Invalid,
    /// A rotated token came back: its session has been revoked (`invalid_token`).
    #[error("the refresh token was already used; its session is revoked")]
    Reused {
        /// The account the session belonged to.
        user_id: i64,
        /// The session that was revoked.
        family: String,
    },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Database(#[from] xcore_db::Error),
}

impl From<diesel::result::Error> for SessionError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(xcore_db::Error::Query(error))
    }
}

/// A refresh token just issued, to hand to the client, and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The token itself; only its hash is stored.
    pub token: String,
    pub user_id: i64,
    /// The session.
    pub family: String,
    pub expires_at: NaiveDateTime,
}

/// An active session, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub family: String,
    /// When its current refresh token was issued.
    pub refreshed_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// The sessions of one database.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Database,
    ttl: chrono::Duration,
    grace: Option<Grace>,
}

/// How long a rotated token still answers with its successor, and the key successors are
/// derived with.
#[derive(Clone)]
struct Grace {
    key: std::sync::Arc<ring::hmac::Key>,
    period: chrono::Duration,
}

impl std::fmt::Debug for Grace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grace").field("period", &self.period).finish_non_exhaustive()
    }
}

/// A refresh token's row, as rotation reads it. A rotated token has both `revoked_at`
/// and `replaced_by`; one revoked by a logout has no successor.
#[derive(diesel::Queryable)]
struct TokenRow {
    id: i64,
    user_id: i64,
    family: String,
    expires_at: NaiveDateTime,
    revoked_at: Option<NaiveDateTime>,
    replaced_by: Option<i64>,
}

impl Sessions {
    /// Sessions whose refresh tokens live `ttl` each.
    pub fn new(db: Database, ttl: std::time::Duration) -> Self {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        Self { db, ttl, grace: None }
    }

    /// Starts a session for `user_id`: a new family and its first token.
    ///
    /// # Errors
    ///
    /// [`SessionError::Token`] without randomness, [`SessionError::Database`].
    pub async fn start(&self, user_id: i64, now: NaiveDateTime) -> Result<Issued, SessionError> {
        let (family, _) = refresh::generate()?;
        self.issue(user_id, &family, now).await.map(|(issued, _)| issued)
    }

    /// Exchanges `token` for the next token of its session. Within the grace period after
    /// a rotation (see [`with_grace`](Self::with_grace)), presenting the rotated token
    /// again answers the same successor instead of counting as reuse.
    ///
    /// # Errors
    ///
    /// [`SessionError::Invalid`] for an unknown, expired or revoked token,
    /// [`SessionError::Reused`] for a token that was already rotated (its session is then
    /// revoked), [`SessionError::Database`].
    pub async fn rotate(&self, token: &str, now: NaiveDateTime) -> Result<Issued, SessionError> {
        let hash = refresh::hash(token);
        let Some(mut row) = self.find(&hash).await? else {
            return Err(SessionError::Invalid);
        };
        if row.revoked_at.is_none() {
            if row.expires_at <= now {
                return Err(SessionError::Invalid);
            }
            if let Some(issued) = self.claim(&row, token, now).await? {
                return Ok(issued);
            }
            // Another use claimed it first, and has committed its successor by now: the
            // claim waited for it. Read what it left.
            row = self.find(&hash).await?.ok_or(SessionError::Invalid)?;
        }
        let Some(next) = row.replaced_by else {
            // Revoked without a successor: the session was ended.
            return Err(SessionError::Invalid);
        };
        if let Some(issued) = self.within_grace(&row, token, next, now).await? {
            return Ok(issued);
        }
        self.revoke(&row.family, now).await?;
        Err(SessionError::Reused { user_id: row.user_id, family: row.family })
    }

    /// Starts answering a rotated token again with its successor for `grace` after the
    /// rotation: two requests of one client refreshing at once (two tabs, a retry after a
    /// lost answer) both get the new token instead of ending the session. Successors are
    /// then derived from their predecessors under `key` (see [`refresh::successor`]).
    #[must_use]
    pub fn with_grace(mut self, key: ring::hmac::Key, grace: std::time::Duration) -> Self {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self.grace = Some(Grace { key: std::sync::Arc::new(key), period: grace });
        self
    }

    async fn find(&self, hash: &str) -> Result<Option<TokenRow>, SessionError> {
        let mut conn = self.db.get().await?;
        let found = with_conn!(conn, c => {
            auth_refresh_tokens::table
                .filter(auth_refresh_tokens::token_hash.eq(hash))
                .select((
                    auth_refresh_tokens::id,
                    auth_refresh_tokens::user_id,
                    auth_refresh_tokens::family,
                    auth_refresh_tokens::expires_at,
                    auth_refresh_tokens::revoked_at,
                    auth_refresh_tokens::replaced_by,
                ))
                .first::<TokenRow>(c)
                .await
                .optional()
        })?;
        Ok(found)
    }

    /// Claims the current token `row` and issues its successor, in one transaction, so a
    /// concurrent use either waits and finds the successor or never saw the token; `None`
    /// when another use claimed it first.
    async fn claim(
        &self,
        row: &TokenRow,
        token: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Issued>, SessionError> {
        let (next, next_hash) = match &self.grace {
            Some(grace) => refresh::successor(&grace.key, token),
            None => refresh::generate()?,
        };
        let expires_at = now + self.ttl;
        let mut conn = self.db.get().await?;
        let claimed = with_conn!(conn, c => {
            c.transaction::<_, diesel::result::Error, _>(async |c| {
                let claimed = diesel::update(
                    auth_refresh_tokens::table
                        .find(row.id)
                        .filter(auth_refresh_tokens::revoked_at.is_null()),
                )
                .set(auth_refresh_tokens::revoked_at.eq(now))
                .execute(c)
                .await?;
                if claimed == 0 {
                    return Ok(false);
                }
                let successor: i64 = diesel::insert_into(auth_refresh_tokens::table)
                    .values((
                        auth_refresh_tokens::user_id.eq(row.user_id),
                        auth_refresh_tokens::family.eq(&row.family),
                        auth_refresh_tokens::token_hash.eq(&next_hash),
                        auth_refresh_tokens::issued_at.eq(now),
                        auth_refresh_tokens::expires_at.eq(expires_at),
                    ))
                    .returning(auth_refresh_tokens::id)
                    .get_result(c)
                    .await?;
                diesel::update(auth_refresh_tokens::table.find(row.id))
                    .set(auth_refresh_tokens::replaced_by.eq(successor))
                    .execute(c)
                    .await?;
                Ok(true)
            })
            .await
        })?;
        Ok(claimed.then(|| Issued {
            token: next,
            user_id: row.user_id,
            family: row.family.clone(),
            expires_at,
        }))
    }

    /// The successor of the rotated token `row`, when it is presented again within the
    /// grace period and the successor is still current; `None` makes it a reuse.
    async fn within_grace(
        &self,
        row: &TokenRow,
        token: &str,
        next: i64,
        now: NaiveDateTime,
    ) -> Result<Option<Issued>, SessionError> {
        let Some(grace) = &self.grace else { return Ok(None) };
        if row.revoked_at.is_none_or(|rotated| now - rotated > grace.period) {
            return Ok(None);
        }
        let (successor, successor_hash) = refresh::successor(&grace.key, token);
        let mut conn = self.db.get().await?;
        let current: Option<(String, NaiveDateTime)> = with_conn!(conn, c => {
            auth_refresh_tokens::table
                .find(next)
                .filter(auth_refresh_tokens::revoked_at.is_null())
                .select((auth_refresh_tokens::token_hash, auth_refresh_tokens::expires_at))
                .first(c)
                .await
                .optional()
        })?;
        // A successor made before grace was on (a random one) cannot be given again.
        Ok(current.filter(|(hash, expires_at)| *hash == successor_hash && *expires_at > now).map(
            |(_, expires_at)| Issued {
                token: successor,
                user_id: row.user_id,
                family: row.family.clone(),
                expires_at,
            },
        ))
    }

    /// Revokes every token of session `family` (a logout, or a reuse detected).
    ///
    /// # Errors
    ///
    /// [`SessionError::Database`].
    pub async fn revoke(&self, family: &str, now: NaiveDateTime) -> Result<(), SessionError> {
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::update(
                auth_refresh_tokens::table
                    .filter(auth_refresh_tokens::family.eq(family))
                    .filter(auth_refresh_tokens::revoked_at.is_null()),
            )
            .set(auth_refresh_tokens::revoked_at.eq(now))
            .execute(c)
            .await
        })?;
        Ok(())
    }

    /// Revokes every session of `user_id` but `keep` (a password change keeps the session
    /// it was made in); returns the sessions it revoked.
    ///
    /// # Errors
    ///
    /// [`SessionError::Database`].
    pub async fn revoke_all(
        &self,
        user_id: i64,
        keep: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<Vec<String>, SessionError> {
        let keep = keep.unwrap_or("");
        let mut conn = self.db.get().await?;
        let mut families: Vec<String> = with_conn!(conn, c => {
            diesel::update(
                auth_refresh_tokens::table
                    .filter(auth_refresh_tokens::user_id.eq(user_id))
                    .filter(auth_refresh_tokens::family.ne(keep))
                    .filter(auth_refresh_tokens::revoked_at.is_null()),
            )
            .set(auth_refresh_tokens::revoked_at.eq(now))
            .returning(auth_refresh_tokens::family)
            .get_results(c)
            .await
        })?;
        families.sort_unstable();
        families.dedup();
        Ok(families)
    }

    /// Ends the session `token` belongs to, whatever the token's state: the account and
    /// the session, or `None` for a token that was never issued.
    ///
    /// # Errors
    ///
    /// [`SessionError::Database`].
    pub async fn end(
        &self,
        token: &str,
        now: NaiveDateTime,
    ) -> Result<Option<(i64, String)>, SessionError> {
        let hash = refresh::hash(token);
        let mut conn = self.db.get().await?;
        let found: Option<(i64, String)> = with_conn!(conn, c => {
            auth_refresh_tokens::table
                .filter(auth_refresh_tokens::token_hash.eq(&hash))
                .select((auth_refresh_tokens::user_id, auth_refresh_tokens::family))
                .first(c)
                .await
                .optional()
        })?;
        drop(conn);
        if let Some((_, family)) = &found {
            self.revoke(family, now).await?;
        }
        Ok(found)
    }

    /// Ends session `family` of `user_id`; whether the account had such a session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Database`].
    pub async fn end_family(
        &self,
        user_id: i64,
        family: &str,
        now: NaiveDateTime,
    ) -> Result<bool, SessionError> {
        let mut conn = self.db.get().await?;
        let owned: i64 = with_conn!(conn, c => {
            auth_refresh_tokens::table
                .filter(auth_refresh_tokens::user_id.eq(user_id))
                .filter(auth_refresh_tokens::family.eq(family))
                .count()
                .get_result(c)
                .await
        })?;
        drop(conn);
        if owned == 0 {
            return Ok(false);
        }
        self.revoke(family, now).await?;
        Ok(true)
    }

    /// The sessions of `user_id` that can still be refreshed at `now`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Database`].
    pub async fn active(
        &self,
        user_id: i64,
        now: NaiveDateTime,
    ) -> Result<Vec<Session>, SessionError> {
        let mut conn = self.db.get().await?;
        let rows: Vec<(String, NaiveDateTime, NaiveDateTime)> = with_conn!(conn, c => {
            auth_refresh_tokens::table
                .filter(auth_refresh_tokens::user_id.eq(user_id))
                .filter(auth_refresh_tokens::revoked_at.is_null())
                .filter(auth_refresh_tokens::expires_at.gt(now))
                .order(auth_refresh_tokens::issued_at.desc())
                .select((
                    auth_refresh_tokens::family,
                    auth_refresh_tokens::issued_at,
                    auth_refresh_tokens::expires_at,
                ))
                .load(c)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(family, refreshed_at, expires_at)| Session { family, refreshed_at, expires_at })
            .collect())
    }

    async fn issue(
        &self,
        user_id: i64,
        family: &str,
        now: NaiveDateTime,
    ) -> Result<(Issued, i64), SessionError> {
        let (token, hash) = refresh::generate()?;
        let expires_at = now + self.ttl;
        let mut conn = self.db.get().await?;
        let id: i64 = with_conn!(conn, c => {
            diesel::insert_into(auth_refresh_tokens::table)
                .values((
                    auth_refresh_tokens::user_id.eq(user_id),
                    auth_refresh_tokens::family.eq(family),
                    auth_refresh_tokens::token_hash.eq(&hash),
                    auth_refresh_tokens::issued_at.eq(now),
                    auth_refresh_tokens::expires_at.eq(expires_at),
                ))
                .returning(auth_refresh_tokens::id)
                .get_result(c)
                .await
        })?;
        let issued = Issued { token, user_id, family: family.to_owned(), expires_at };
        Ok((issued, id))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xcore_db::DatabaseConfig;

    use super::*;
    use crate::accounts::{Accounts, MIGRATIONS};

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(secs, 0).unwrap().naive_utc()
    }

    /// Sessions with 100 s tokens over a migrated database holding one account, and its id.
    async fn setup(url: &str) -> (Sessions, i64) {
        let db =
            Database::new(&DatabaseConfig { url: url.to_owned(), ..Default::default() }).unwrap();
        db.migrate(&[&MIGRATIONS]).await.unwrap();
        let accounts = Accounts::new(db.clone());
        let id = accounts.create("ada@example.com", None, "$h", at(0)).await.unwrap().id;
        (Sessions::new(db, Duration::from_secs(100)), id)
    }

    async fn on_every_backend<F, Fut>(label: &str, check: F)
    where
        F: Fn(Sessions, i64) -> Fut,
        Fut: Future<Output = ()>,
    {
        let (sessions, user) = setup("sqlite::memory:").await;
        check(sessions, user).await;
        if let Some(url) = xcore_db::testing::fresh_postgres_url(label).await {
            let (sessions, user) = setup(&url).await;
            check(sessions, user).await;
        }
    }

    #[tokio::test]
    async fn tokens_rotate_within_their_session() {
        on_every_backend("auth_rotate", |sessions, user| async move {
            let first = sessions.start(user, at(10)).await.unwrap();
            assert_eq!((first.user_id, first.expires_at), (user, at(110)));
            let second = sessions.rotate(&first.token, at(20)).await.unwrap();
            assert_eq!(second.family, first.family);
            assert_ne!(second.token, first.token);
            let third = sessions.rotate(&second.token, at(30)).await.unwrap();
            assert_eq!(third.expires_at, at(130));
            let active = sessions.active(user, at(40)).await.unwrap();
            assert_eq!(active.len(), 1);
            assert_eq!(
                (active[0].family.as_str(), active[0].refreshed_at),
                (first.family.as_str(), at(30))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn within_grace_a_rotated_token_answers_its_successor_even_at_once() {
        on_every_backend("auth_grace", |sessions, user| async move {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[3; 32]);
            let sessions = sessions.with_grace(key, Duration::from_secs(10));
            let first = sessions.start(user, at(10)).await.unwrap();
            // Two uses of one token at the same moment: one rotation, one answer.
            let (a, b) = tokio::join!(
                sessions.rotate(&first.token, at(20)),
                sessions.rotate(&first.token, at(20))
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!((&a.token, &a.family), (&b.token, &first.family));
            assert_eq!(a.expires_at, b.expires_at);
            // Again within the grace period, from another node: the same successor.
            assert_eq!(sessions.rotate(&first.token, at(30)).await.unwrap().token, a.token);
            assert_eq!(sessions.active(user, at(30)).await.unwrap().len(), 1);
            // The successor works, and once it has been rotated the first token is a reuse.
            let third = sessions.rotate(&a.token, at(31)).await.unwrap();
            let late = sessions.rotate(&first.token, at(32)).await;
            assert!(matches!(late, Err(SessionError::Reused { .. })), "{late:?}");
            assert!(matches!(
                sessions.rotate(&third.token, at(33)).await,
                Err(SessionError::Invalid)
            ));
            // Past the grace period a rotated token is a reuse too.
            let other = sessions.start(user, at(100)).await.unwrap();
            sessions.rotate(&other.token, at(100)).await.unwrap();
            let stale = sessions.rotate(&other.token, at(111)).await;
            assert!(matches!(stale, Err(SessionError::Reused { .. })), "{stale:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_reused_token_revokes_its_whole_session() {
        on_every_backend("auth_reuse", |sessions, user| async move {
            let first = sessions.start(user, at(10)).await.unwrap();
            let other = sessions.start(user, at(10)).await.unwrap();
            let second = sessions.rotate(&first.token, at(20)).await.unwrap();
            let reused = sessions.rotate(&first.token, at(25)).await;
            assert!(matches!(reused, Err(SessionError::Reused { .. })), "{reused:?}");
            // The legitimate client's current token went with the session...
            assert!(matches!(
                sessions.rotate(&second.token, at(26)).await,
                Err(SessionError::Invalid)
            ));
            // ...and the user's other session did not.
            assert!(sessions.rotate(&other.token, at(27)).await.is_ok());
            let active = sessions.active(user, at(28)).await.unwrap();
            assert_eq!(active.len(), 1);
            assert_eq!(active[0].family, other.family);
        })
        .await;
    }

    #[tokio::test]
    async fn expired_unknown_and_revoked_tokens_are_refused() {
        on_every_backend("auth_refuse", |sessions, user| async move {
            let session = sessions.start(user, at(10)).await.unwrap();
            assert!(matches!(
                sessions.rotate(&session.token, at(110)).await,
                Err(SessionError::Invalid)
            ));
            assert!(matches!(sessions.rotate("made-up", at(20)).await, Err(SessionError::Invalid)));
            let kept = sessions.start(user, at(30)).await.unwrap();
            let gone = sessions.start(user, at(30)).await.unwrap();
            let revoked = sessions.revoke_all(user, Some(&kept.family), at(40)).await.unwrap();
            let mut expected = vec![session.family.clone(), gone.family.clone()];
            expected.sort();
            assert_eq!(revoked, expected);
            assert!(matches!(
                sessions.rotate(&gone.token, at(41)).await,
                Err(SessionError::Invalid)
            ));
            let kept = sessions.rotate(&kept.token, at(42)).await.unwrap();
            sessions.revoke(&kept.family, at(43)).await.unwrap();
            assert!(matches!(
                sessions.rotate(&kept.token, at(44)).await,
                Err(SessionError::Invalid)
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn sessions_end_by_token_or_by_id_of_their_own_account() {
        on_every_backend("auth_end", |sessions, user| async move {
            let first = sessions.start(user, at(10)).await.unwrap();
            let second = sessions.start(user, at(10)).await.unwrap();
            let rotated = sessions.rotate(&first.token, at(11)).await.unwrap();
            // The old token of a session still names it.
            assert_eq!(
                sessions.end(&first.token, at(12)).await.unwrap(),
                Some((user, first.family.clone()))
            );
            assert!(sessions.rotate(&rotated.token, at(13)).await.is_err());
            assert_eq!(sessions.end("never-issued", at(13)).await.unwrap(), None);
            assert!(!sessions.end_family(user + 1, &second.family, at(14)).await.unwrap());
            assert_eq!(sessions.active(user, at(14)).await.unwrap().len(), 1);
            assert!(sessions.end_family(user, &second.family, at(14)).await.unwrap());
            assert!(sessions.active(user, at(15)).await.unwrap().is_empty());
        })
        .await;
    }
}
