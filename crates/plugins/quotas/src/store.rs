//! The two quota tables and the statements on them, for both backends.
//!
//! Each change is one statement, atomic on its own, so nodes sharing the database never
//! need a lock between them: a daily reservation is a conditional upsert that only counts
//! a message while the count is under the limit, and a usage change adds a signed delta.

use std::time::Duration;

use chrono::{DateTime, Utc};

use diesel::upsert::excluded;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use xcore_db::{Backend, Database, with_conn};
use xcore_messaging::{Draft, Message, UserId};

use crate::Result;

diesel::table! {
    quota_daily (user_id, day) {
        user_id -> Text,
        day -> BigInt,
        messages -> BigInt,
    }
}

diesel::table! {
    quota_usage (user_id) {
        user_id -> Text,
        bytes -> BigInt,
    }
}

const SECS_PER_DAY: i64 = 86_400;

/// The UTC day `now` falls in, as days since 1970-01-01, and the time left until the next
/// UTC midnight.
pub fn utc_day(now: DateTime<Utc>) -> (i64, Duration) {
    let day = now.timestamp().div_euclid(SECS_PER_DAY);
    let into_day = Duration::new(
        now.timestamp().rem_euclid(SECS_PER_DAY).unsigned_abs(),
        now.timestamp_subsec_nanos(),
    );
    (day, Duration::from_secs(SECS_PER_DAY.unsigned_abs()) - into_day)
}

/// The size a message counts for: the UTF-8 bytes of its body and of its attachment's
/// JSON text, as the engine stores them.
///
/// The engine stores an attachment as this same serialization of the draft's value, and
/// events carry it parsed back, which serializes to the same text; so what a message adds
/// when sent is what its edit or deletion takes away, and what a recount of the stored
/// text finds.
pub fn message_size(body: &str, attachment: Option<&serde_json::Value>) -> i64 {
    let attachment = attachment.map_or(0, |value| value.to_string().len());
    i64::try_from(body.len() + attachment).unwrap_or(i64::MAX)
}

/// [`message_size`] of a draft.
pub(crate) fn draft_size(draft: &Draft) -> i64 {
    message_size(&draft.body, draft.attachment.as_ref())
}

/// [`message_size`] of a stored message; 0 once deleted.
pub(crate) fn stored_size(message: &Message) -> i64 {
    if message.deleted { 0 } else { message_size(&message.body, message.attachment.as_ref()) }
}

/// Counts one more message from `user` on `day` if fewer than `limit` are counted: whether
/// it was counted. One statement, so concurrent reservations on any number of nodes never
/// count more than `limit`.
pub(crate) async fn reserve(db: &Database, user: &UserId, day: i64, limit: i64) -> Result<bool> {
    use quota_daily::dsl as d;
    let mut conn = db.get().await?;
    let counted = with_conn!(conn, c => {
        let upsert = diesel::insert_into(d::quota_daily)
            .values((d::user_id.eq(user.as_str()), d::day.eq(day), d::messages.eq(1_i64)))
            .on_conflict((d::user_id, d::day))
            .do_update()
            .set(d::messages.eq(d::messages + 1_i64));
        // `ON CONFLICT … DO UPDATE … WHERE`: the upsert's own `filter`, not a query's.
        diesel::query_dsl::methods::FilterDsl::filter(upsert, d::messages.lt(limit))
            .returning(d::messages)
            .get_result::<i64>(c)
            .await
            .optional()
    })?;
    Ok(counted.is_some())
}

/// Deletes the counts of days before `day`: at most one row per user who sent on them.
pub(crate) async fn prune(db: &Database, day: i64) -> Result<usize> {
    use quota_daily::dsl as d;
    let mut conn = db.get().await?;
    let deleted = with_conn!(conn, c => {
        diesel::delete(d::quota_daily.filter(d::day.lt(day))).execute(c).await
    })?;
    Ok(deleted)
}

/// Messages `user` has had counted on `day`.
pub(crate) async fn messages_on(db: &Database, user: &UserId, day: i64) -> Result<i64> {
    use quota_daily::dsl as d;
    let mut conn = db.get().await?;
    let count = with_conn!(conn, c => {
        d::quota_daily.find((user.as_str(), day)).select(d::messages).first::<i64>(c).await.optional()
    })?;
    Ok(count.unwrap_or(0))
}

/// The bytes `user`'s stored messages take.
pub(crate) async fn stored_bytes(db: &Database, user: &UserId) -> Result<i64> {
    use quota_usage::dsl as u;
    let mut conn = db.get().await?;
    let bytes = with_conn!(conn, c => {
        u::quota_usage.find(user.as_str()).select(u::bytes).first::<i64>(c).await.optional()
    })?;
    Ok(bytes.unwrap_or(0))
}

/// Adds `delta` (negative to free space) to `user`'s stored bytes.
pub(crate) async fn add_bytes(db: &Database, user: &UserId, delta: i64) -> Result<()> {
    use quota_usage::dsl as u;
    if delta == 0 {
        return Ok(());
    }
    let mut conn = db.get().await?;
    with_conn!(conn, c => {
        diesel::insert_into(u::quota_usage)
            .values((u::user_id.eq(user.as_str()), u::bytes.eq(delta)))
            .on_conflict(u::user_id)
            .do_update()
            .set(u::bytes.eq(u::bytes + excluded(u::bytes)))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Every user's stored bytes from `messaging_messages`, as the migrations count them.
/// SQLite's `length` of a BLOB is in bytes; of TEXT it would be in characters.
const COUNT_SQLITE: &str = "INSERT INTO quota_usage (user_id, bytes) \
    SELECT sender_id, \
    SUM(length(CAST(body AS BLOB)) + COALESCE(length(CAST(attachment AS BLOB)), 0)) \
    FROM messaging_messages WHERE NOT deleted GROUP BY sender_id";
const COUNT_POSTGRES: &str = "INSERT INTO quota_usage (user_id, bytes) \
    SELECT sender_id, SUM(octet_length(body) + COALESCE(octet_length(attachment), 0))::BIGINT \
    FROM messaging_messages WHERE NOT deleted GROUP BY sender_id";

/// Replaces every user's stored bytes by the count of the stored messages, in one
/// transaction.
pub(crate) async fn recount(db: &Database) -> Result<()> {
    let count = match db.backend() {
        Backend::Sqlite => COUNT_SQLITE,
        Backend::Postgres => COUNT_POSTGRES,
    };
    let mut conn = db.get().await?;
    with_conn!(conn, c => {
        c.transaction::<_, diesel::result::Error, _>(async |c| {
            diesel::delete(quota_usage::table).execute(c).await?;
            diesel::sql_query(count).execute(c).await
        })
        .await
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;

    fn check_day(time: &str, day: i64, left: Duration) {
        let now = DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc);
        assert_eq!(utc_day(now), (day, left), "{time}");
    }

    #[test]
    fn days_are_utc_and_the_wait_runs_to_the_next_midnight() {
        check_day("1970-01-01T00:00:00Z", 0, Duration::from_secs(86_400));
        check_day("1970-01-02T23:59:59.250Z", 1, Duration::from_millis(750));
        // 23:30 in New York is 04:30 UTC the next day.
        check_day("2026-12-05T23:30:00-05:00", 20_793, Duration::from_secs(19 * 3600 + 1800));
        check_day("1969-12-31T12:00:00Z", -1, Duration::from_secs(12 * 3600));
        let midnight = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
        assert_eq!(utc_day(midnight), (20_793, Duration::from_secs(86_400)));
    }

    #[test]
    fn a_message_counts_the_bytes_of_its_body_and_attachment_json() {
        for (body, attachment, size) in [
            ("hi", None, 2),
            ("Grüß", None, 6),
            ("", Some(json!({"name": "a.png"})), 16),
            ("é", Some(json!({})), 4),
        ] {
            assert_eq!(message_size(body, attachment.as_ref()), size, "{body:?} {attachment:?}");
        }
    }
}
