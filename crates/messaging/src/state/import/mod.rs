//! Importing a state file into the store, in one transaction.
//!
//! What the file holds is merged into what is stored, never the reverse, and nothing is
//! removed, so importing the same file again changes nothing:
//!
//! - users are matched by id; the file's username and metadata win, `last_seen` only
//!   moves forward, a stored `created_at` stays;
//! - groups are matched by name, direct conversations by their pair of members; missing
//!   members are added; a member's role is the file's when it gives one, else the stored
//!   one, else `member`; a group left without an owner gets its first listed member as
//!   owner (the original engine had no roles);
//! - messages are matched by sequence number: a stored one must be the file's (same
//!   sender, and same time, or same body when the file gives no time), and takes the
//!   file's text only when the file's edit is later (a deleted message stays deleted);
//!   the file's messages past the stored ones are added after them;
//! - read markers only move forward.
//!
//! The conversations the file names are locked first, in id order as a commit locks
//! them, so the import and concurrent sends wait for each other instead of interleaving.
//! No hook runs: an import restores history, it does not make any.

use std::collections::HashMap;

use chrono::{NaiveDateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use xcore_db::{Backend, Conn, with_conn};

use super::{
    Access, Counts, DirectEntry, FileId, GroupEntry, ImportReport, MessageEntry, Pairs, StateError,
    StateFile, Time, UserEntry, begin, end, validate,
};
use crate::engine::{Engine, direct_key};
use crate::error::Error;
use crate::model::{ConversationKind, Role, UserId};
use crate::schema::{MessageRow, UserRow, conversations, members, messages, parse_role, users};

/// Rows inserted by one statement (eight parameters each, far below either backend's
/// limit), and rows or ids read by one query.
const BATCH: usize = 500;

type Result<T = ()> = std::result::Result<T, StateError>;

mod history;

impl Engine {
    /// Imports a state file (see [`crate::state`] for the format and how it is merged):
    /// all of it, or nothing.
    ///
    /// # Errors
    ///
    /// [`StateError::Malformed`] for text that is not a state file, with its line and
    /// column; [`StateError::Inconsistent`] for a file that contradicts itself or what is
    /// stored, with the line and column of the offending value; [`StateError::Engine`]
    /// when the database fails. Nothing is changed when an error is returned.
    pub async fn import_state(&self, text: &str) -> Result<ImportReport> {
        // A byte-order mark is not JSON, but some editors write one.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let file: StateFile = serde_json::from_str(text).map_err(malformed)?;
        validate::check(&file).map_err(|error| error.locate(text))?;
        let lobby = self.lobby().await?;
        let mut conn = self.conn().await?;
        begin(&mut conn, Access::Write).await?;
        let now = super::truncate(Utc::now()).naive_utc();
        let mut importer = Importer { conn: &mut conn, now, report: ImportReport::default() };
        let outcome = importer.run(&file, lobby).await;
        let report = importer.report;
        let outcome = end(&mut conn, outcome.map(|()| report)).await;
        // Cached memberships may predate the import.
        self.inner().roles.invalidate_all();
        outcome.map_err(|error| error.locate(text))
    }
}

/// serde_json's error, its position apart.
fn malformed(error: serde_json::Error) -> StateError {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    StateError::Malformed { line, column, reason }
}

struct Importer<'a> {
    conn: &'a mut Conn,
    /// The time of what the file does not date.
    now: NaiveDateTime,
    report: ImportReport,
}

impl Importer<'_> {
    async fn run(&mut self, file: &StateFile, lobby: i64) -> Result {
        let groups = self.find_groups(&file.groups).await?;
        let direct = self.find_direct(&file.direct).await?;
        let mut ids: Vec<i64> = groups.iter().chain(&direct).flatten().copied().collect();
        ids.push(lobby);
        ids.sort_unstable();
        ids.dedup();
        let last = self.lock(&ids).await?;
        let last_of = |id: i64| {
            last.get(&id)
                .copied()
                .ok_or(Error::Conflict("a conversation was deleted during the import: retry"))
        };
        self.users(&file.users, lobby).await?;
        for (i, (group, found)) in file.groups.iter().zip(groups).enumerate() {
            let stored = found.map(|id| Ok::<_, Error>((id, last_of(id)?))).transpose()?;
            let changed = self.group(i, group, stored).await?;
            count(&mut self.report.groups, stored.is_none(), changed);
        }
        for (i, (conversation, found)) in file.direct.iter().zip(direct).enumerate() {
            let stored = found.map(|id| Ok::<_, Error>((id, last_of(id)?))).transpose()?;
            let changed = self.direct(i, conversation, stored).await?;
            count(&mut self.report.direct, stored.is_none(), changed);
        }
        let at = "/lobby/messages";
        self.messages(lobby, last_of(lobby)?, &file.lobby.messages, at).await?;
        self.read(lobby, &file.lobby.read).await?;
        Ok(())
    }

    /// The stored group of each of the file's, by name.
    async fn find_groups(&mut self, groups: &[GroupEntry]) -> Result<Vec<Option<i64>>> {
        let names: Vec<&str> = groups.iter().map(|group| group.name.as_str()).collect();
        let mut found: HashMap<String, Vec<i64>> = HashMap::new();
        for chunk in names.chunks(BATCH) {
            let chunk = chunk.to_vec();
            let rows: Vec<(i64, Option<String>)> = with_conn!(*self.conn, c => {
                conversations::table
                    .filter(conversations::kind.eq(ConversationKind::Group.as_str()))
                    .filter(conversations::name.eq_any(&chunk))
                    .select((conversations::id, conversations::name))
                    .order(conversations::id)
                    .load(c)
                    .await
            })?;
            for (id, name) in rows {
                found.entry(name.unwrap_or_default()).or_default().push(id);
            }
        }
        let mut ids = Vec::with_capacity(groups.len());
        for (i, group) in groups.iter().enumerate() {
            match found.get(&group.name).map(Vec::as_slice) {
                None => ids.push(None),
                Some([id]) => ids.push(Some(*id)),
                Some(several) => {
                    let list: Vec<String> = several.iter().map(i64::to_string).collect();
                    return Err(StateError::inconsistent(
                        format!("/groups/{i}/name"),
                        format!(
                            "{} stored groups are named `{}` (ids {}): groups are matched by \
                             name, so rename all but one of them first",
                            several.len(),
                            group.name,
                            list.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(ids)
    }

    /// The stored direct conversation of each of the file's, by pair.
    async fn find_direct(&mut self, direct: &[DirectEntry]) -> Result<Vec<Option<i64>>> {
        let keys: Vec<String> = direct.iter().map(|entry| pair_key(&entry.members)).collect();
        let mut found: HashMap<String, i64> = HashMap::new();
        for chunk in keys.chunks(BATCH) {
            let rows: Vec<(i64, Option<String>)> = with_conn!(*self.conn, c => {
                conversations::table
                    .filter(conversations::direct_key.eq_any(chunk))
                    .select((conversations::id, conversations::direct_key))
                    .load(c)
                    .await
            })?;
            found.extend(rows.into_iter().filter_map(|(id, key)| Some((key?, id))));
        }
        Ok(keys.iter().map(|key| found.get(key).copied()).collect())
    }

    /// Locks the conversations `ids` (sorted) until the transaction ends: their `last_seq`.
    async fn lock(&mut self, ids: &[i64]) -> Result<HashMap<i64, i64>> {
        let mut last = HashMap::with_capacity(ids.len());
        for &id in ids {
            let seq: Option<i64> = with_conn!(*self.conn, c => {
                diesel::update(conversations::table.find(id))
                    .set(conversations::last_seq.eq(conversations::last_seq))
                    .returning(conversations::last_seq)
                    .get_result(c)
                    .await
                    .optional()
            })?;
            if let Some(seq) = seq {
                last.insert(id, seq);
            }
        }
        Ok(last)
    }

    async fn users(&mut self, entries: &[UserEntry], lobby: i64) -> Result {
        for chunk in entries.chunks(BATCH) {
            let ids: Vec<&str> = chunk.iter().map(|user| user.id.as_str()).collect();
            let stored: Vec<UserRow> = with_conn!(*self.conn, c => {
                users::table
                    .filter(users::id.eq_any(&ids))
                    .select(UserRow::as_select())
                    .load(c)
                    .await
            })?;
            let stored: HashMap<String, UserRow> =
                stored.into_iter().map(|row| (row.id.clone(), row)).collect();
            for user in chunk {
                let Some(row) = stored.get(user.id.as_str()) else {
                    self.insert_user(user, lobby).await?;
                    self.report.users.created += 1;
                    continue;
                };
                if self.update_user(user, row).await? {
                    self.report.users.updated += 1;
                } else {
                    self.report.users.unchanged += 1;
                }
            }
        }
        Ok(())
    }

    async fn insert_user(&mut self, user: &UserEntry, lobby: i64) -> Result {
        let metadata = metadata_text(user.metadata.as_ref());
        let created_at = user.created_at.map_or(self.now, Time::naive);
        let last_seen = user.last_seen.map(Time::naive);
        let id = user.id.as_str();
        with_conn!(*self.conn, c => {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(id),
                    users::username.eq(&user.username),
                    users::metadata.eq(&metadata),
                    users::created_at.eq(created_at),
                    users::last_seen.eq(last_seen),
                ))
                .execute(c)
                .await?;
            // Every user is in the lobby.
            diesel::insert_into(members::table)
                .values((
                    members::conversation_id.eq(lobby),
                    members::user_id.eq(id),
                    members::role.eq(Role::Member.as_str()),
                    members::joined_at.eq(created_at),
                ))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    /// Updates a stored user from the file: whether anything changed.
    async fn update_user(&mut self, user: &UserEntry, row: &UserRow) -> Result<bool> {
        let stored: Option<serde_json::Value> = serde_json::from_str(&row.metadata).ok();
        // Absent, the stored metadata stays.
        let metadata = user.metadata.as_ref().map(|given| metadata_text(Some(given)));
        let metadata_changed = metadata
            .as_deref()
            .is_some_and(|text| serde_json::from_str::<serde_json::Value>(text).ok() != stored);
        let last_seen = row.last_seen.max(user.last_seen.map(Time::naive));
        if user.username == row.username && !metadata_changed && last_seen == row.last_seen {
            return Ok(false);
        }
        let metadata = metadata.unwrap_or_else(|| row.metadata.clone());
        with_conn!(*self.conn, c => {
            diesel::update(users::table.find(&row.id))
                .set((
                    users::username.eq(&user.username),
                    users::metadata.eq(&metadata),
                    users::last_seen.eq(last_seen),
                ))
                .execute(c)
                .await
        })?;
        Ok(true)
    }

    /// Imports group `i`, stored as `stored` (its id and last sequence number) or new:
    /// whether a stored one changed.
    async fn group(
        &mut self,
        i: usize,
        group: &GroupEntry,
        stored: Option<(i64, i64)>,
    ) -> Result<bool> {
        let (id, last, joined_at) = match stored {
            Some((id, last)) => (id, last, self.now),
            None => {
                let created_at = group.created_at.map_or(self.now, Time::naive);
                let id = with_conn!(*self.conn, c => {
                    diesel::insert_into(conversations::table)
                        .values((
                            conversations::kind.eq(ConversationKind::Group.as_str()),
                            conversations::name.eq(&group.name),
                            conversations::created_at.eq(created_at),
                        ))
                        .returning(conversations::id)
                        .get_result::<i64>(c)
                        .await
                })?;
                (id, 0, created_at)
            }
        };
        let mut changed = self.group_members(id, group, stored.is_some(), joined_at).await?;
        changed |=
            self.messages(id, last, &group.messages, &format!("/groups/{i}/messages")).await?;
        changed |= self.read(id, &group.read).await?;
        Ok(changed)
    }

    /// Adds the group's missing members and sets the file's roles: whether anything
    /// changed.
    async fn group_members(
        &mut self,
        id: i64,
        group: &GroupEntry,
        existing: bool,
        joined_at: NaiveDateTime,
    ) -> Result<bool> {
        let mut roles: HashMap<String, Role> = HashMap::new();
        if existing {
            let rows: Vec<(String, String)> = with_conn!(*self.conn, c => {
                members::table
                    .filter(members::conversation_id.eq(id))
                    .select((members::user_id, members::role))
                    .load(c)
                    .await
            })?;
            for (user, role) in rows {
                roles.insert(user, parse_role(&role)?);
            }
        }
        let given: HashMap<&str, Role> =
            group.roles.0.iter().map(|(user, role)| (user.as_str(), *role)).collect();
        // Each listed member: the stored role (if a member) and the role to have.
        let mut plan: Vec<(&str, Option<Role>, Role)> = group
            .members
            .iter()
            .map(|member| {
                let (user, stored) = (member.as_str(), roles.get(member.as_str()).copied());
                let role = given.get(user).copied().or(stored).unwrap_or(Role::Member);
                (user, stored, role)
            })
            .collect();
        for (user, _, role) in &plan {
            roles.insert((*user).to_owned(), *role);
        }
        if !roles.values().any(|role| *role == Role::Owner)
            && let Some(first) = plan.first_mut()
        {
            first.2 = Role::Owner;
        }
        let mut changed = false;
        for (user, stored, role) in plan {
            match stored {
                Some(stored) if stored == role => continue,
                Some(_) => with_conn!(*self.conn, c => {
                    diesel::update(members::table.find((id, user)))
                        .set(members::role.eq(role.as_str()))
                        .execute(c)
                        .await
                })?,
                None => with_conn!(*self.conn, c => {
                    diesel::insert_into(members::table)
                        .values((
                            members::conversation_id.eq(id),
                            members::user_id.eq(user),
                            members::role.eq(role.as_str()),
                            members::joined_at.eq(joined_at),
                        ))
                        .execute(c)
                        .await
                })?,
            };
            changed = true;
        }
        Ok(changed)
    }

    /// Imports direct conversation `i`, stored as `stored` or new: whether a stored one
    /// changed.
    async fn direct(
        &mut self,
        i: usize,
        direct: &DirectEntry,
        stored: Option<(i64, i64)>,
    ) -> Result<bool> {
        let (id, last) = match stored {
            Some(stored) => stored,
            None => {
                let created_at = direct.created_at.map_or(self.now, Time::naive);
                let key = pair_key(&direct.members);
                let id = with_conn!(*self.conn, c => {
                    diesel::insert_into(conversations::table)
                        .values((
                            conversations::kind.eq(ConversationKind::Direct.as_str()),
                            conversations::direct_key.eq(&key),
                            conversations::created_at.eq(created_at),
                        ))
                        .returning(conversations::id)
                        .get_result::<i64>(c)
                        .await
                })?;
                for member in &direct.members {
                    with_conn!(*self.conn, c => {
                        diesel::insert_into(members::table)
                            .values((
                                members::conversation_id.eq(id),
                                members::user_id.eq(member.as_str()),
                                members::role.eq(Role::Member.as_str()),
                                members::joined_at.eq(created_at),
                            ))
                            .execute(c)
                            .await
                    })?;
                }
                (id, 0)
            }
        };
        let mut changed =
            self.messages(id, last, &direct.messages, &format!("/direct/{i}/messages")).await?;
        changed |= self.read(id, &direct.read).await?;
        Ok(changed)
    }
}

/// The stored form of the file's metadata: `null` and absent are an empty object.
fn metadata_text(metadata: Option<&serde_json::Value>) -> String {
    match metadata {
        Some(value) if value.is_object() => value.to_string(),
        _ => "{}".to_owned(),
    }
}

/// The key of the direct conversation between the two `members` (checked to be two).
fn pair_key(members: &[FileId]) -> String {
    match members {
        [a, b] => direct_key(&UserId::from(a.as_str()), &UserId::from(b.as_str())),
        _ => String::new(),
    }
}

/// Counts a conversation: new, changed or neither.
fn count(counts: &mut Counts, created: bool, changed: bool) {
    if created {
        counts.created += 1;
    } else if changed {
        counts.updated += 1;
    } else {
        counts.unchanged += 1;
    }
}
