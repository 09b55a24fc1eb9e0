//! The engine's state file: everything the engine stores, as one JSON document, written
//! by [`Engine::export_state`] and read back by [`Engine::import_state`] (and by the
//! `xcore messaging export|import` command).
//!
//! The format is a superset of the original engine's `engine_state.json`
//! (`{"users": [{"id", "username", "metadata", "connected"}], "groups": [{"name",
//! "members"}]}`), so a file written by the original imports as it is:
//!
//! ```json
//! {
//!   "version": 2,
//!   "users": [{"id": "ada", "username": "Ada", "metadata": {}, "connected": false,
//!              "created_at": "…", "last_seen": null}],
//!   "groups": [{"name": "tea", "members": ["ada", "bob"], "roles": {"ada": "owner"},
//!               "read": {"ada": 1}, "created_at": "…", "messages": [{"seq": 1,
//!               "sender": "ada", "body": "hi", "attachment": null, "created_at": "…",
//!               "edited_at": null, "deleted": false}]}],
//!   "direct": [{"members": ["ada", "bob"], "read": {}, "created_at": "…", "messages": []}],
//!   "lobby": {"read": {}, "messages": []}
//! }
//! ```
//!
//! Of the keys the original did not write, only those that identify a thing are required
//! on import (a direct conversation's `members`, a message's `seq`, `sender` and `body`);
//! unknown keys are refused, so a misspelt one is not lost silently. Ids may be strings or
//! integers (the original kept whatever its caller passed). Times are RFC 3339, kept to
//! the microsecond (what PostgreSQL stores), so a file means the same on both backends.
//!
//! An export is one consistent snapshot, streamed page by page, so its size is bounded
//! by the writer, not by memory. An import is all or nothing: the file is checked on its
//! own first, then applied in one transaction that also checks it against what is
//! stored; any problem is reported with its line and column and changes nothing. Only
//! then is the line of a problem looked up in the text (`lines.rs`): a valid file costs
//! no scan.

mod command;
mod export;
mod import;
mod lines;
mod validate;

use std::fmt;

use chrono::{DateTime, DurationRound as _, NaiveDateTime, TimeDelta, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

pub(crate) use command::run as run_command;

use crate::error::Error;
use crate::model::Role;

/// The version of the format [`Engine::export_state`](crate::Engine::export_state)
/// writes. A file without `version` is the original engine's (version 1).
pub const FORMAT_VERSION: u64 = 2;

/// Why an export or an import failed. A failed import has changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The text is not JSON, or not the shape of a state file (a missing or unknown key,
    /// a value of the wrong type).
    #[error("line {line}, column {column}: {reason}")]
    Malformed { line: usize, column: usize, reason: String },
    /// The file is well formed but contradicts itself or what is stored. `pointer` is the
    /// JSON pointer of the offending value (`/groups/3/members/1`); `position` is where
    /// it starts in the text.
    #[error("{}: {reason}", match position {
        Some(position) => format!("{position} ({pointer})"),
        None => pointer.clone(),
    })]
    Inconsistent { position: Option<Position>, pointer: String, reason: String },
    /// Writing the export failed.
    #[error("cannot write the state: {0}")]
    Write(#[from] std::io::Error),
    /// The database failed; nothing was imported.
    #[error(transparent)]
    Engine(#[from] Error),
}

impl StateError {
    pub(crate) fn inconsistent(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Inconsistent { position: None, pointer: pointer.into(), reason: reason.into() }
    }

    /// Finds in `text` where the offending value of an inconsistency starts.
    fn locate(self, text: &str) -> Self {
        match self {
            Self::Inconsistent { position: None, pointer, reason } => {
                Self::Inconsistent { position: lines::locate(text, &pointer), pointer, reason }
            }
            other => other,
        }
    }
}

impl From<diesel::result::Error> for StateError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Engine(error.into())
    }
}

impl From<xcore_db::Error> for StateError {
    fn from(error: xcore_db::Error) -> Self {
        Self::Engine(error.into())
    }
}

/// Where a value starts in a text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What an import created, updated and found already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: u64,
    /// Existing and changed: a profile, members or roles, newer edits of a message.
    pub updated: u64,
    /// Existing and already as the file says.
    pub unchanged: u64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} unchanged",
            self.created, self.updated, self.unchanged
        )
    }
}

/// What [`Engine::import_state`](crate::Engine::import_state) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub users: Counts,
    /// A group is updated when it gained members, roles changed, or it gained messages or
    /// read markers moved.
    pub groups: Counts,
    pub direct: Counts,
    /// The messages of every conversation, the lobby's included.
    pub messages: Counts,
    /// Read markers moved forward.
    pub read_markers: u64,
}

impl ImportReport {
    /// Whether the import changed anything.
    pub fn changed(&self) -> bool {
        let counts = [self.users, self.groups, self.direct, self.messages];
        self.read_markers > 0 || counts.iter().any(|c| c.created + c.updated > 0)
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "users: {}", self.users)?;
        writeln!(f, "groups: {}", self.groups)?;
        writeln!(f, "direct conversations: {}", self.direct)?;
        writeln!(f, "messages: {}", self.messages)?;
        write!(f, "read markers moved forward: {}", self.read_markers)
    }
}

/// What [`Engine::export_state`](crate::Engine::export_state) wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    pub users: u64,
    pub groups: u64,
    pub direct: u64,
    /// The messages of every conversation, the lobby's included.
    pub messages: u64,
    /// Names that several groups share. An import matches groups by name, so it refuses
    /// a file with such names until all but one of each are renamed.
    pub shared_group_names: Vec<String>,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users, {} groups, {} direct conversations, {} messages",
            self.users, self.groups, self.direct, self.messages
        )
    }
}

// The file as read. Keys the original did not write are optional; unknown keys are
// refused, so a misspelt one is reported rather than silently dropped.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFile {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    groups: Vec<GroupEntry>,
    #[serde(default)]
    direct: Vec<DirectEntry>,
    #[serde(default)]
    lobby: LobbyEntry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserEntry {
    id: FileId,
    username: String,
    /// `null` is an empty object; absent keeps what is stored.
    #[serde(default, deserialize_with = "present")]
    metadata: Option<serde_json::Value>,
    /// Written by the original; whoever is connected is the running engine's business.
    #[serde(default, rename = "connected")]
    _connected: de::IgnoredAny,
    #[serde(default)]
    created_at: Option<Time>,
    #[serde(default)]
    last_seen: Option<Time>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupEntry {
    name: String,
    members: Vec<FileId>,
    #[serde(default)]
    roles: Pairs<Role>,
    #[serde(default)]
    read: Pairs<i64>,
    #[serde(default)]
    created_at: Option<Time>,
    #[serde(default)]
    messages: Vec<MessageEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectEntry {
    members: Vec<FileId>,
    #[serde(default)]
    read: Pairs<i64>,
    #[serde(default)]
    created_at: Option<Time>,
    #[serde(default)]
    messages: Vec<MessageEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LobbyEntry {
    #[serde(default)]
    read: Pairs<i64>,
    #[serde(default)]
    messages: Vec<MessageEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageEntry {
    seq: i64,
    sender: FileId,
    body: String,
    #[serde(default)]
    attachment: Option<serde_json::Value>,
    #[serde(default)]
    created_at: Option<Time>,
    #[serde(default)]
    edited_at: Option<Time>,
    #[serde(default)]
    deleted: bool,
}

/// Distinguishes a key given as `null` (`Some(Null)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// A user id as the file gives it: a string, or an integer (read as its decimal text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FileId(String);

impl FileId {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for FileId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = FileId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user id (a string or an integer)")
            }

            fn visit_str<E: de::Error>(self, id: &str) -> Result<FileId, E> {
                Ok(FileId(id.to_owned()))
            }

            fn visit_string<E: de::Error>(self, id: String) -> Result<FileId, E> {
                Ok(FileId(id))
            }

            fn visit_i64<E: de::Error>(self, id: i64) -> Result<FileId, E> {
                Ok(FileId(id.to_string()))
            }

            fn visit_u64<E: de::Error>(self, id: u64) -> Result<FileId, E> {
                Ok(FileId(id.to_string()))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// A time in RFC 3339, in UTC to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Time(NaiveDateTime);

impl Time {
    /// `time` to the microsecond, as stored.
    fn from_utc(time: DateTime<Utc>) -> Self {
        Self(truncate(time).naive_utc())
    }

    fn naive(self) -> NaiveDateTime {
        self.0
    }
}

/// `time` without its nanoseconds: what PostgreSQL keeps.
fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(time)
}

/// `time` (stored, UTC) as the file writes it.
fn format_time(time: NaiveDateTime) -> String {
    truncate(time.and_utc()).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|time| Self::from_utc(time.with_timezone(&Utc)))
            .map_err(|error| {
                de::Error::custom(format!(
                    "`{text}` is not an RFC 3339 time such as 2024-05-01T12:00:00Z: {error}"
                ))
            })
    }
}

/// A JSON object read in order, refusing a key given twice (where serde_json would keep
/// the last silently).
#[derive(Debug)]
pub(crate) struct Pairs<V>(Vec<(String, V)>);

impl<V> Default for Pairs<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
            type Value = Pairs<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by user id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<V>, A::Error> {
                let mut pairs: Vec<(String, V)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
                let mut seen = std::collections::HashSet::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("the key `{key}` appears twice")));
                    }
                    pairs.push((key, value));
                }
                Ok(Pairs(pairs))
            }
        }

        deserializer.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}

/// A JSON pointer's segment for `key` (`/` and `~` escaped).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// How a state transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// One snapshot for the whole export, however long it takes.
    Read,
    /// The import: on SQLite the write lock is taken at once, so that the transaction
    /// cannot find, after reading, that another writer got there first.
    Write,
}

/// Begins a transaction on `conn`. Ended by [`end`]; a future dropped in between leaves
/// the transaction open, which makes the pool discard the connection rather than reuse it.
async fn begin(conn: &mut xcore_db::Conn, access: Access) -> Result<(), StateError> {
    use diesel::connection::AnsiTransactionManager as SyncManager;
    use diesel_async::AnsiTransactionManager;

    match conn {
        xcore_db::Conn::Sqlite(c) => {
            let sql = match access {
                Access::Read => "BEGIN",
                Access::Write => "BEGIN IMMEDIATE",
            };
            c.spawn_blocking(move |c| SyncManager::begin_transaction_sql(c, sql)).await?;
        }
        xcore_db::Conn::Postgres(c) => {
            let sql = match access {
                Access::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                Access::Write => "BEGIN",
            };
            AnsiTransactionManager::begin_transaction_sql(&mut **c, sql).await?;
        }
    }
    Ok(())
}

/// Commits the transaction [`begin`] opened when `outcome` is a success, rolls it back
/// otherwise.
async fn end<T>(
    conn: &mut xcore_db::Conn,
    outcome: Result<T, StateError>,
) -> Result<T, StateError> {
    match outcome {
        Ok(value) => {
            xcore_db::with_conn!(*conn, c => commit(c).await)?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = xcore_db::with_conn!(*conn, c => rollback(c).await) {
                // The connection is then marked broken and not reused: nothing is lost.
                tracing::warn!(plugin = "messaging", error = %rollback, "rollback failed");
            }
            Err(error)
        }
    }
}

async fn commit<C: diesel_async::AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    use diesel_async::TransactionManager as _;
    C::TransactionManager::commit_transaction(c).await
}

async fn rollback<C: diesel_async::AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    use diesel_async::TransactionManager as _;
    C::TransactionManager::rollback_transaction(c).await
}
