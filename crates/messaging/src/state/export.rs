//! Exporting the store as a state file, streamed.
//!
//! Everything is read in one transaction, so the file is one consistent snapshot even
//! while the server sends messages, and page by page (users, conversations and messages
//! by their keys), each page written before the next is read: memory holds one page and
//! one group's members, however many messages there are. The output is indented JSON,
//! so an import's errors point at a line that means something.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use xcore_db::{Conn, with_conn};

use super::{Access, ExportReport, FORMAT_VERSION, StateError, begin, end, format_time};
use crate::engine::Engine;
use crate::model::{ConversationKind, Message, User};
use crate::schema::{
    ConversationRow, MessageRow, UserRow, conversations, members, messages, users,
};

/// Rows read by one query.
const PAGE: i64 = 1000;

type Result<T = ()> = std::result::Result<T, StateError>;

impl Engine {
    /// Writes everything the engine stores to `writer` as a state file (see
    /// [`crate::state`]). `connected` is written `false` for everyone: presence belongs
    /// to a running engine, and an import ignores it.
    ///
    /// `writer` is written to between database reads, synchronously: give it a buffered
    /// file or standard output. It is flushed at the end.
    ///
    /// # Errors
    ///
    /// [`StateError::Write`] when writing fails, [`StateError::Engine`] when the database
    /// does. What was written by then is not a whole file.
    pub async fn export_state<W: Write + Send>(&self, writer: W) -> Result<ExportReport> {
        let lobby = self.lobby().await?;
        let mut conn = self.conn().await?;
        begin(&mut conn, Access::Read).await?;
        let exporter =
            Exporter { conn: &mut conn, out: Json::new(writer), report: ExportReport::default() };
        let outcome = exporter.run(lobby).await;
        end(&mut conn, outcome).await
    }
}

struct Exporter<'a, W: Write> {
    conn: &'a mut Conn,
    out: Json<W>,
    report: ExportReport,
}

#[derive(Serialize)]
struct UserOut<'a> {
    id: &'a str,
    username: &'a str,
    metadata: &'a serde_json::Value,
    connected: bool,
    created_at: String,
    last_seen: Option<String>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    seq: i64,
    sender: &'a str,
    body: &'a str,
    attachment: &'a Option<serde_json::Value>,
    created_at: String,
    edited_at: Option<String>,
    deleted: bool,
}

impl<W: Write> Exporter<'_, W> {
    async fn run(mut self, lobby: i64) -> Result<ExportReport> {
        self.out.open(None, b'{')?;
        self.out.value(Some("version"), &FORMAT_VERSION)?;
        self.users().await?;
        self.conversations(ConversationKind::Group).await?;
        self.conversations(ConversationKind::Direct).await?;
        self.out.open(Some("lobby"), b'{')?;
        self.out.open(Some("read"), b'{')?;
        self.lobby_read(lobby).await?;
        self.out.close(b'}')?;
        self.messages(lobby).await?;
        self.out.close(b'}')?;
        self.out.close(b'}')?;
        self.out.finish()?;
        Ok(self.report)
    }

    async fn users(&mut self) -> Result {
        self.out.open(Some("users"), b'[')?;
        let mut after = String::new();
        loop {
            let rows: Vec<UserRow> = with_conn!(*self.conn, c => {
                users::table
                    .filter(users::id.gt(&after))
                    .select(UserRow::as_select())
                    .order(users::id)
                    .limit(PAGE)
                    .load(c)
                    .await
            })?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                let (created_at, last_seen) = (row.created_at, row.last_seen);
                let user = User::from(row);
                self.out.value(
                    None,
                    &UserOut {
                        id: user.id.as_str(),
                        username: &user.username,
                        metadata: &user.metadata,
                        connected: false,
                        created_at: format_time(created_at),
                        last_seen: last_seen.map(format_time),
                    },
                )?;
                self.report.users += 1;
                after = user.id.as_str().to_owned();
            }
            if !full {
                break;
            }
        }
        self.out.close(b']')?;
        Ok(())
    }

    /// Every group (under `groups`) or direct conversation (under `direct`).
    async fn conversations(&mut self, kind: ConversationKind) -> Result {
        let key = match kind {
            ConversationKind::Group => "groups",
            _ => "direct",
        };
        self.out.open(Some(key), b'[')?;
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut after = 0_i64;
        loop {
            let rows: Vec<ConversationRow> = with_conn!(*self.conn, c => {
                conversations::table
                    .filter(conversations::kind.eq(kind.as_str()))
                    .filter(conversations::id.gt(after))
                    .select(ConversationRow::as_select())
                    .order(conversations::id)
                    .limit(PAGE)
                    .load(c)
                    .await
            })?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                after = row.id;
                if kind == ConversationKind::Group {
                    let name = row.name.clone().unwrap_or_default();
                    *names.entry(name).or_default() += 1;
                    self.report.groups += 1;
                } else {
                    self.report.direct += 1;
                }
                self.conversation(row, kind).await?;
            }
            if !full {
                break;
            }
        }
        self.out.close(b']')?;
        let mut shared: Vec<String> =
            names.into_iter().filter(|(_, count)| *count > 1).map(|(name, _)| name).collect();
        shared.sort_unstable();
        self.report.shared_group_names.extend(shared);
        Ok(())
    }

    async fn conversation(&mut self, row: ConversationRow, kind: ConversationKind) -> Result {
        let id = row.id;
        let rows: Vec<(String, String, i64)> = with_conn!(*self.conn, c => {
            members::table
                .filter(members::conversation_id.eq(id))
                .select((members::user_id, members::role, members::last_read_seq))
                .order(members::user_id)
                .load(c)
                .await
        })?;
        let ids: Vec<&str> = rows.iter().map(|(user, _, _)| user.as_str()).collect();
        let read: BTreeMap<&str, i64> = rows
            .iter()
            .filter(|(_, _, seq)| *seq > 0)
            .map(|(user, _, seq)| (user.as_str(), *seq))
            .collect();
        self.out.open(None, b'{')?;
        if kind == ConversationKind::Group {
            self.out.value(Some("name"), &row.name.as_deref().unwrap_or_default())?;
            self.out.value(Some("members"), &ids)?;
            let mut roles = BTreeMap::new();
            for (user, role, _) in &rows {
                roles.insert(user.as_str(), crate::schema::parse_role(role)?);
            }
            self.out.value(Some("roles"), &roles)?;
        } else {
            self.out.value(Some("members"), &ids)?;
        }
        self.out.value(Some("read"), &read)?;
        self.out.value(Some("created_at"), &format_time(row.created_at))?;
        self.messages(id).await?;
        self.out.close(b'}')?;
        Ok(())
    }

    /// The lobby's read markers, as members of the open `read` object.
    async fn lobby_read(&mut self, lobby: i64) -> Result {
        let mut after = String::new();
        loop {
            let rows: Vec<(String, i64)> = with_conn!(*self.conn, c => {
                members::table
                    .filter(members::conversation_id.eq(lobby))
                    .filter(members::last_read_seq.gt(0))
                    .filter(members::user_id.gt(&after))
                    .select((members::user_id, members::last_read_seq))
                    .order(members::user_id)
                    .limit(PAGE)
                    .load(c)
                    .await
            })?;
            let full = rows.len() as i64 == PAGE;
            for (user, seq) in rows {
                self.out.value(Some(&user), &seq)?;
                after = user;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The `messages` of conversation `id`.
    async fn messages(&mut self, id: i64) -> Result {
        self.out.open(Some("messages"), b'[')?;
        let mut after = 0_i64;
        loop {
            let rows: Vec<MessageRow> = with_conn!(*self.conn, c => {
                messages::table
                    .filter(messages::conversation_id.eq(id))
                    .filter(messages::seq.gt(after))
                    .select(MessageRow::as_select())
                    .order(messages::seq)
                    .limit(PAGE)
                    .load(c)
                    .await
            })?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                let (created_at, edited_at) = (row.created_at, row.edited_at);
                let message = Message::from(row);
                self.out.value(
                    None,
                    &MessageOut {
                        seq: message.seq,
                        sender: message.sender_id.as_str(),
                        body: &message.body,
                        attachment: &message.attachment,
                        created_at: format_time(created_at),
                        edited_at: edited_at.map(format_time),
                        deleted: message.deleted,
                    },
                )?;
                self.report.messages += 1;
                after = message.seq;
            }
            if !full {
                break;
            }
        }
        self.out.close(b']')?;
        Ok(())
    }
}

/// Indented JSON written as it comes: containers are opened and closed by hand, and
/// values inside them are written whole.
struct Json<W: Write> {
    writer: W,
    /// Per open container, whether it has an entry yet.
    open: Vec<bool>,
}

impl<W: Write> Json<W> {
    fn new(writer: W) -> Self {
        Self { writer, open: Vec::new() }
    }

    /// Opens an object (`{`) or an array (`[`), under `key` in an object.
    fn open(&mut self, key: Option<&str>, bracket: u8) -> io::Result<()> {
        self.entry(key)?;
        self.writer.write_all(&[bracket])?;
        self.open.push(false);
        Ok(())
    }

    /// Closes the innermost container with `bracket`.
    fn close(&mut self, bracket: u8) -> io::Result<()> {
        if self.open.pop() == Some(true) {
            self.newline()?;
        }
        self.writer.write_all(&[bracket])
    }

    /// Writes `value` whole, under `key` in an object.
    fn value(&mut self, key: Option<&str>, value: &impl Serialize) -> io::Result<()> {
        self.entry(key)?;
        let text = serde_json::to_vec_pretty(value)?;
        // Line breaks in pretty JSON fall between tokens (a string's own are escaped), so
        // indenting after each one nests the value.
        for (n, line) in text.split(|byte| *byte == b'\n').enumerate() {
            if n > 0 {
                self.newline()?;
            }
            self.writer.write_all(line)?;
        }
        Ok(())
    }

    /// Ends the document.
    fn finish(&mut self) -> io::Result<()> {
        self.writer.write_all(b"\n")?;
        self.writer.flush()
    }

    /// Starts an entry of the innermost container: the comma, the line, the key.
    fn entry(&mut self, key: Option<&str>) -> io::Result<()> {
        if let Some(started) = self.open.last_mut() {
            let comma = std::mem::replace(started, true);
            if comma {
                self.writer.write_all(b",")?;
            }
            self.newline()?;
        }
        if let Some(key) = key {
            serde_json::to_writer(&mut self.writer, key)?;
            self.writer.write_all(b": ")?;
        }
        Ok(())
    }

    fn newline(&mut self) -> io::Result<()> {
        self.writer.write_all(b"\n")?;
        for _ in 0..self.open.len() {
            self.writer.write_all(b"  ")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn nests_values_as_serde_json_would_indent_them() {
        let mut json = Json::new(Vec::new());
        json.open(None, b'{').unwrap();
        json.value(Some("a"), &1).unwrap();
        json.open(Some("b"), b'[').unwrap();
        json.value(None, &serde_json::json!({"x": [1, "y\nz"], "e": {}})).unwrap();
        json.value(None, &Role::Owner).unwrap();
        json.close(b']').unwrap();
        json.open(Some("c"), b'[').unwrap();
        json.close(b']').unwrap();
        json.close(b'}').unwrap();
        json.finish().unwrap();
        let text = String::from_utf8(json.writer).unwrap();
        let expected = serde_json::json!({
            "a": 1, "b": [{"x": [1, "y\nz"], "e": {}}, "owner"], "c": []
        });
        assert_eq!(text, format!("{}\n", serde_json::to_string_pretty(&expected).unwrap()));
    }
}
