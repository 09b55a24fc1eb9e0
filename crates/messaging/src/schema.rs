//! The engine's tables, for both backends, and their rows.

use chrono::NaiveDateTime;
use diesel::{Queryable, Selectable};
use diesel_migrations::embed_migrations;
use xcore_db::MigrationSet;

use crate::Error;
use crate::model::{Conversation, ConversationKind, Member, Message, Role, User, UserId};

/// The messaging tables (users, conversations with the lobby, members, messages).
pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "messaging",
    sqlite: embed_migrations!("migrations/sqlite"),
    postgres: embed_migrations!("migrations/postgres"),
};

diesel::table! {
    messaging_users (id) {
        id -> Text,
        username -> Text,
        metadata -> Text,
        created_at -> Timestamp,
        last_seen -> Nullable<Timestamp>,
    }
}

diesel::table! {
    messaging_conversations (id) {
        id -> BigInt,
        kind -> Text,
        name -> Nullable<Text>,
        direct_key -> Nullable<Text>,
        last_seq -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    messaging_members (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> Text,
        role -> Text,
        last_read_seq -> BigInt,
        joined_at -> Timestamp,
    }
}

diesel::table! {
    messaging_messages (id) {
        id -> BigInt,
        conversation_id -> BigInt,
        seq -> BigInt,
        sender_id -> Text,
        body -> Text,
        attachment -> Nullable<Text>,
        created_at -> Timestamp,
        edited_at -> Nullable<Timestamp>,
        deleted -> Bool,
    }
}

diesel::joinable!(messaging_members -> messaging_conversations (conversation_id));
diesel::joinable!(messaging_members -> messaging_users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    messaging_users,
    messaging_conversations,
    messaging_members,
    messaging_messages,
);

pub(crate) use messaging_conversations as conversations;
pub(crate) use messaging_members as members;
pub(crate) use messaging_messages as messages;
pub(crate) use messaging_users as users;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messaging_users)]
pub(crate) struct UserRow {
    pub id: String,
    pub username: String,
    pub metadata: String,
    pub created_at: NaiveDateTime,
    pub last_seen: Option<NaiveDateTime>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: UserId::from(row.id),
            username: row.username,
            // Written by the engine from a JSON object: anything else is an edit by hand.
            metadata: serde_json::from_str(&row.metadata)
                .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
            created_at: row.created_at.and_utc(),
            last_seen: row.last_seen.map(|time| time.and_utc()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messaging_conversations)]
pub(crate) struct ConversationRow {
    pub id: i64,
    pub kind: String,
    pub name: Option<String>,
    pub last_seq: i64,
    pub created_at: NaiveDateTime,
}

impl ConversationRow {
    pub fn kind(&self) -> Result<ConversationKind, Error> {
        ConversationKind::parse(&self.kind)
            .ok_or_else(|| Error::Store(format!("conversation {}: kind `{}`", self.id, self.kind)))
    }

    pub fn into_conversation(self) -> Result<Conversation, Error> {
        Ok(Conversation {
            kind: self.kind()?,
            id: self.id,
            name: self.name,
            last_seq: self.last_seq,
            created_at: self.created_at.and_utc(),
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messaging_members)]
pub(crate) struct MemberRow {
    pub user_id: String,
    pub role: String,
    pub last_read_seq: i64,
    pub joined_at: NaiveDateTime,
}

impl MemberRow {
    pub fn role(&self) -> Result<Role, Error> {
        parse_role(&self.role)
    }

    pub fn into_member(self, username: String) -> Result<Member, Error> {
        Ok(Member {
            role: self.role()?,
            user_id: UserId::from(self.user_id),
            username,
            joined_at: self.joined_at.and_utc(),
            last_read_seq: self.last_read_seq,
        })
    }
}

pub(crate) fn parse_role(text: &str) -> Result<Role, Error> {
    Role::parse(text).ok_or_else(|| Error::Store(format!("role `{text}`")))
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messaging_messages)]
pub(crate) struct MessageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub seq: i64,
    pub sender_id: String,
    pub body: String,
    pub attachment: Option<String>,
    pub created_at: NaiveDateTime,
    pub edited_at: Option<NaiveDateTime>,
    pub deleted: bool,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Self {
            id: row.id,
            conversation_id: row.conversation_id,
            seq: row.seq,
            sender_id: UserId::from(row.sender_id),
            body: row.body,
            attachment: row.attachment.and_then(|text| serde_json::from_str(&text).ok()),
            created_at: row.created_at.and_utc(),
            edited_at: row.edited_at.map(|time| time.and_utc()),
            deleted: row.deleted,
        }
    }
}

/// A message to insert: the database assigns its id.
#[derive(Debug, Clone)]
pub(crate) struct NewMessageRow<'a> {
    pub conversation_id: i64,
    pub seq: i64,
    pub sender_id: &'a str,
    pub body: &'a str,
    pub attachment: Option<&'a str>,
    pub created_at: NaiveDateTime,
}
