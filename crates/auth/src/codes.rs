//! One-time codes: password-reset codes and two-factor recovery codes, stored hashed.
//!
//! A reset code is a refresh-token-sized random string (256 bits) with a lifetime; a
//! recovery code is 16 base32 characters (80 bits) in four groups, short enough to write
//! down, with no lifetime. Both are kept as their SHA-256, so a leaked table gives
//! nothing to type in, and are spent with a conditional update, so each works once even
//! when presented twice at the same moment.

use chrono::NaiveDateTime;
use diesel::{BoolExpressionMethods, ExpressionMethods, NullableExpressionMethods, QueryDsl};
use diesel_async::{AsyncConnection, RunQueryDsl};
use xcore_db::{Database, with_conn};

use crate::refresh;
use crate::token::TokenError;

diesel::table! {
    auth_one_time_codes (id) {
        id -> BigInt,
        user_id -> BigInt,
        purpose -> Text,
        code_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        used_at -> Nullable<Timestamp>,
    }
}

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    Recovery,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::Recovery => "recovery",
        }
    }
}

/// How many recovery codes two-factor comes with.
pub const RECOVERY_CODES: usize = 10;

/// The alphabet of recovery codes: RFC 4648 base32, lower-cased for readability.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new recovery code, `xxxx-xxxx-xxxx-xxxx`.
///
/// # Errors
///
/// [`TokenError::Issue`] when the operating system gives no random bytes.
pub fn recovery_code() -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| TokenError::Issue(error.to_string()))?;
    let mut code = String::with_capacity(19);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(RECOVERY_ALPHABET[usize::from(byte & 31)]));
    }
    Ok(code)
}

/// The form a recovery code is compared in: lower-case, without separators or spaces, so
/// `ABCD EFGH…` as typed matches.
fn normalize_recovery(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The one-time codes of one database.
#[derive(Debug, Clone)]
pub struct Codes {
    db: Database,
}

impl Codes {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Issues a password-reset code for `user_id`, valid until `expires_at`; earlier unused
    /// reset codes of the account stop working.
    ///
    /// # Errors
    ///
    /// [`CodeError`] without randomness or when the database fails.
    pub async fn issue_reset(
        &self,
        user_id: i64,
        now: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<String, CodeError> {
        let (code, hash) = refresh::generate()?;
        self.replace(user_id, Purpose::PasswordReset, vec![hash], Some(expires_at), now).await?;
        Ok(code)
    }

    /// Replaces the recovery codes of `user_id` with [`RECOVERY_CODES`] new ones, returned
    /// in clear this once.
    ///
    /// # Errors
    ///
    /// [`CodeError`] without randomness or when the database fails.
    pub async fn issue_recovery(
        &self,
        user_id: i64,
        now: NaiveDateTime,
    ) -> Result<Vec<String>, CodeError> {
        let codes = (0..RECOVERY_CODES).map(|_| recovery_code()).collect::<Result<Vec<_>, _>>()?;
        let hashes = codes.iter().map(|code| refresh::hash(&normalize_recovery(code))).collect();
        self.replace(user_id, Purpose::Recovery, hashes, None, now).await?;
        Ok(codes)
    }

    /// Spends `code` for `user_id`: whether it was a valid, unused, unexpired code of that
    /// purpose (and is now used).
    ///
    /// # Errors
    ///
    /// [`CodeError::Database`].
    pub async fn spend(
        &self,
        user_id: i64,
        purpose: Purpose,
        code: &str,
        now: NaiveDateTime,
    ) -> Result<bool, CodeError> {
        let hash = match purpose {
            Purpose::Recovery => refresh::hash(&normalize_recovery(code)),
            Purpose::PasswordReset => refresh::hash(code.trim()),
        };
        let mut conn = self.db.get().await?;
        let spent = with_conn!(conn, c => {
            diesel::update(
                auth_one_time_codes::table
                    .filter(auth_one_time_codes::user_id.eq(user_id))
                    .filter(auth_one_time_codes::purpose.eq(purpose.as_str()))
                    .filter(auth_one_time_codes::code_hash.eq(&hash))
                    .filter(auth_one_time_codes::used_at.is_null())
                    .filter(
                        auth_one_time_codes::expires_at
                            .is_null()
                            .or(auth_one_time_codes::expires_at.gt(now).assume_not_null()),
                    ),
            )
            .set(auth_one_time_codes::used_at.eq(now))
            .execute(c)
            .await
        })?;
        Ok(spent > 0)
    }

    /// How many unused codes of `purpose` `user_id` has.
    ///
    /// # Errors
    ///
    /// [`CodeError::Database`].
    pub async fn remaining(&self, user_id: i64, purpose: Purpose) -> Result<i64, CodeError> {
        let mut conn = self.db.get().await?;
        let count = with_conn!(conn, c => {
            auth_one_time_codes::table
                .filter(auth_one_time_codes::user_id.eq(user_id))
                .filter(auth_one_time_codes::purpose.eq(purpose.as_str()))
                .filter(auth_one_time_codes::used_at.is_null())
                .count()
                .get_result(c)
                .await
        })?;
        Ok(count)
    }

    /// Deletes every code of `purpose` of `user_id`.
    ///
    /// # Errors
    ///
    /// [`CodeError::Database`].
    pub async fn clear(&self, user_id: i64, purpose: Purpose) -> Result<(), CodeError> {
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            diesel::delete(
                auth_one_time_codes::table
                    .filter(auth_one_time_codes::user_id.eq(user_id))
                    .filter(auth_one_time_codes::purpose.eq(purpose.as_str())),
            )
            .execute(c)
            .await
        })?;
        Ok(())
    }

    async fn replace(
        &self,
        user_id: i64,
        purpose: Purpose,
        hashes: Vec<String>,
        expires_at: Option<NaiveDateTime>,
        now: NaiveDateTime,
    ) -> Result<(), CodeError> {
        let rows: Vec<_> = hashes
            .iter()
            .map(|hash| {
                (
                    auth_one_time_codes::user_id.eq(user_id),
                    auth_one_time_codes::purpose.eq(purpose.as_str()),
                    auth_one_time_codes::code_hash.eq(hash),
                    auth_one_time_codes::created_at.eq(now),
                    auth_one_time_codes::expires_at.eq(expires_at),
                )
            })
            .collect();
        let mut conn = self.db.get().await?;
        with_conn!(conn, c => {
            c.transaction::<_, diesel::result::Error, _>(async |c| {
                diesel::delete(
                    auth_one_time_codes::table
                        .filter(auth_one_time_codes::user_id.eq(user_id))
                        .filter(auth_one_time_codes::purpose.eq(purpose.as_str())),
                )
                .execute(c)
                .await?;
                // One statement per row: SQLite's batch insert is not available through
                // the async wrapper, and there are at most ten.
                for row in &rows {
                    diesel::insert_into(auth_one_time_codes::table).values(*row).execute(c).await?;
                }
                Ok(())
            })
            .await
        })?;
        Ok(())
    }
}

/// What a code operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Random(#[from] TokenError),
    #[error(transparent)]
    Database(#[from] xcore_db::Error),
}

impl From<diesel::result::Error> for CodeError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(xcore_db::Error::Query(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_80_bits_in_four_groups_and_match_as_typed() {
        let code = recovery_code().unwrap();
        assert_eq!(code.len(), 19);
        assert_eq!(code.split('-').count(), 4);
        assert!(code.split('-').all(|group| group.len() == 4));
        assert_ne!(code, recovery_code().unwrap());
        let typed = code.to_uppercase().replace('-', " ");
        assert_eq!(normalize_recovery(&typed), normalize_recovery(&code));
    }
}
