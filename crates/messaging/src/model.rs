//! What the engine stores and answers: users, conversations, members, messages.
//!
//! Times are UTC. Stored rows keep them without an offset (both backends alike); these
//! types carry [`DateTime<Utc>`], which serializes as RFC 3339.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's id: the account id in the server, any opaque string when embedded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "42")]
pub struct UserId(Arc<str>);

impl UserId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for UserId {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl From<String> for UserId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl From<&String> for UserId {
    fn from(id: &String) -> Self {
        Self::from(id.as_str())
    }
}

impl From<i64> for UserId {
    fn from(id: i64) -> Self {
        Self::from(id.to_string())
    }
}

impl From<&UserId> for UserId {
    fn from(id: &UserId) -> Self {
        id.clone()
    }
}

/// A conversation's id: the lobby, a group or a direct conversation.
pub type ConversationId = i64;

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ChatUser)]
pub struct User {
    pub id: UserId,
    pub username: String,
    /// Free JSON, an object.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// When the user was last seen connected; `null` if never.
    pub last_seen: Option<DateTime<Utc>>,
}

/// Whether a user is connected, on how many devices, and since when not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    pub online: bool,
    /// Connections counted by `connect_user` and not yet ended by `disconnect_user`.
    pub devices: u32,
    /// When the user was last connected (now, while online); `null` if never.
    pub last_seen: Option<DateTime<Utc>>,
}

/// What kind of conversation a [`Conversation`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    /// The one conversation every user belongs to: where the original engine's
    /// `send_message(id, content)` goes.
    Lobby,
    /// A named group with owners, admins and members.
    Group,
    /// Two users.
    Direct,
}

impl ConversationKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Lobby => "lobby",
            Self::Group => "group",
            Self::Direct => "direct",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "lobby" => Some(Self::Lobby),
            "group" => Some(Self::Group),
            "direct" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// A conversation as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    /// The group's name; `null` for a direct conversation.
    pub name: Option<String>,
    /// The sequence number of the last message (0 when there is none).
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
}

/// A member's rights in a group. Direct conversations and the lobby have members only.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    /// Manages members (not owners or other admins) and renames the group.
    Admin,
    /// Everything, including admins, owners and deleting the group.
    Owner,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    /// Whether this role manages the group (renames it, adds and removes members).
    pub fn manages(self) -> bool {
        self >= Self::Admin
    }
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// The last sequence number this member marked read.
    pub last_read_seq: i64,
}

/// A conversation with what one member has not read yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationSummary {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The member's role in it.
    pub role: Role,
    pub last_read_seq: i64,
    /// Messages after `last_read_seq` sent by others and not deleted.
    pub unread: i64,
    /// For a direct conversation, the other user (the user themselves in their notes to
    /// self).
    pub peer: Option<UserId>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// Unique across every conversation and node.
    pub id: i64,
    pub conversation_id: ConversationId,
    /// 1 for a conversation's first message, then one more for each: never a gap.
    pub seq: i64,
    pub sender_id: UserId,
    /// Empty once deleted.
    pub body: String,
    /// Free JSON describing attached files (names, types, URLs); `null` if none.
    #[schema(value_type = Option<Object>)]
    pub attachment: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

/// What a sender asks to send (and what `before_message` hooks may rewrite).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    /// The text: at most `messaging.max_message_chars` characters; it may be blank only
    /// when there is an attachment.
    pub body: String,
    /// A JSON object describing attached files; at most `messaging.max_attachment_bytes`
    /// once serialized.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub attachment: Option<serde_json::Value>,
}

impl Draft {
    /// A text message without attachment.
    pub fn text(body: impl Into<String>) -> Self {
        Self { body: body.into(), attachment: None }
    }
}

impl From<&str> for Draft {
    fn from(body: &str) -> Self {
        Self::text(body)
    }
}

impl From<String> for Draft {
    fn from(body: String) -> Self {
        Self::text(body)
    }
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The latest `limit` messages.
    Latest { limit: u32 },
    /// Up to `limit` messages with sequence numbers below `seq`, the closest ones.
    Before { seq: i64, limit: u32 },
    /// Up to `limit` messages with sequence numbers above `seq`, the closest ones.
    After { seq: i64, limit: u32 },
    /// Up to `limit` messages with sequence numbers strictly between `after` and `before`,
    /// the closest to `after`: a gap to fill.
    Between { after: i64, before: i64, limit: u32 },
}

impl Page {
    pub(crate) fn limit(self) -> u32 {
        match self {
            Self::Latest { limit }
            | Self::Before { limit, .. }
            | Self::After { limit, .. }
            | Self::Between { limit, .. } => limit,
        }
    }
}

/// Who acts: a user, and whether they moderate every conversation (in the server, the
/// `messaging.moderate` permission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: UserId,
    pub moderator: bool,
}

impl Actor {
    /// A user with no moderation rights.
    pub fn user(user: impl Into<UserId>) -> Self {
        Self { user: user.into(), moderator: false }
    }

    /// A moderator.
    pub fn moderator(user: impl Into<UserId>) -> Self {
        Self { user: user.into(), moderator: true }
    }
}

impl From<UserId> for Actor {
    fn from(user: UserId) -> Self {
        Self::user(user)
    }
}

impl From<&UserId> for Actor {
    fn from(user: &UserId) -> Self {
        Self::user(user)
    }
}

impl From<&str> for Actor {
    fn from(user: &str) -> Self {
        Self::user(user)
    }
}
