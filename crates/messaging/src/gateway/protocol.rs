//! The frames of the native WebSocket protocol (`docs/protocol.md`): JSON text frames
//! with a `type`, and a client-chosen `ref` that replies carry back.

use serde::{Deserialize, Serialize};

use crate::model::{ConversationId, Message};

/// A client's reference for a request, echoed in its reply: any JSON string or number
/// (up to [`MAX_REF_CHARS`] characters as a string).
pub type Ref = serde_json::Value;

/// The longest `ref` string accepted.
pub const MAX_REF_CHARS: usize = 64;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// The access token, when neither the `Authorization` header nor `?token=` gave one,
    /// or a fresh one before the current expires.
    Auth {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        token: String,
    },
    Ping {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
    },
    /// Sends a message; answered by `ack` once it is committed.
    Send {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        #[serde(default)]
        body: String,
        #[serde(default)]
        attachment: Option<serde_json::Value>,
    },
    /// Replaces a message's body and attachment (its sender, a group's owners and
    /// admins, or a moderator); answered by `ack`.
    Edit {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        seq: i64,
        #[serde(default)]
        body: String,
        #[serde(default)]
        attachment: Option<serde_json::Value>,
    },
    /// Deletes a message (same rights as `edit`); answered by `ack`.
    Delete {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        seq: i64,
    },
    /// The presence of `users` (at most 100), or, without `users`, who is online.
    Presence {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        #[serde(default)]
        users: Option<Vec<crate::UserId>>,
    },
    /// The caller's conversations, with unread counts.
    Conversations {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
    },
    /// The direct conversation with `user`, created if needed.
    Direct {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        user: crate::UserId,
    },
    /// Creates a group owned by the caller.
    GroupCreate {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        name: String,
        #[serde(default)]
        members: Vec<crate::UserId>,
    },
    GroupRename {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        name: String,
    },
    GroupDelete {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
    },
    Members {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
    },
    MemberAdd {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        user: crate::UserId,
        #[serde(default)]
        role: Option<crate::Role>,
    },
    MemberRole {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        user: crate::UserId,
        role: crate::Role,
    },
    MemberRemove {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        user: crate::UserId,
    },
    Leave {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
    },
    /// The caller's profile and presence; with `username` or `metadata`, changed first.
    Profile {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        metadata: Option<serde_json::Value>,
    },
    /// Receives a conversation's messages from now on, or, with `after`, every message
    /// after that sequence number first (resume), then live ones.
    Subscribe {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        #[serde(default)]
        after: Option<i64>,
    },
    Unsubscribe {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
    },
    /// A page of history, as `GET /messaging/conversations/{id}/messages`.
    History {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        #[serde(default)]
        before: Option<i64>,
        #[serde(default)]
        after: Option<i64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Moves the read marker.
    Read {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
        seq: i64,
    },
    /// Tells the conversation's other subscribers the sender is typing; nothing stored.
    Typing {
        #[serde(default, rename = "ref")]
        reference: Option<Ref>,
        conversation: ConversationId,
    },
}

/// What the server sends, but `message` frames, which are serialized once per message
/// for every recipient ([`message_frame`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// Authenticated: the caller's messaging user id.
    Ready {
        user: &'a str,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
    },
    /// A message is committed.
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        id: i64,
        seq: i64,
        ts: chrono::DateTime<chrono::Utc>,
    },
    /// Subscribed; every message up to `last_seq` (after `after`, when given) has been
    /// sent before this frame.
    Subscribed {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        last_seq: i64,
    },
    /// No longer subscribed: asked for, or removed from the conversation.
    Unsubscribed {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        reason: &'a str,
    },
    History {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        messages: &'a [Message],
    },
    Read {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        seq: i64,
    },
    Typing {
        conversation: ConversationId,
        user: &'a str,
    },
    Conversations {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversations: &'a [crate::ConversationSummary],
    },
    Conversation {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: &'a crate::Conversation,
    },
    Members {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        members: &'a [crate::Member],
    },
    Member {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        conversation: ConversationId,
        member: &'a crate::Member,
    },
    /// A request that answers nothing else was carried out.
    Done {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
    },
    Profile {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        user: &'a crate::User,
        presence: crate::Presence,
    },
    /// Who is online, or the presence of the users asked about.
    Presence {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        users: &'a [UserPresence],
    },
    /// The access token expired: send a fresh one in an `auth` frame within
    /// `grace_secs`, or the socket closes with 4003.
    TokenExpired {
        grace_secs: u64,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Ref>,
        code: &'a str,
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The `ref` of the request this frame answers, if any.
    pub fn reference(&self) -> Option<&Ref> {
        match self {
            Self::Pong { reference }
            | Self::Ack { reference, .. }
            | Self::Subscribed { reference, .. }
            | Self::Unsubscribed { reference, .. }
            | Self::History { reference, .. }
            | Self::Read { reference, .. }
            | Self::Conversations { reference, .. }
            | Self::Conversation { reference, .. }
            | Self::Members { reference, .. }
            | Self::Member { reference, .. }
            | Self::Done { reference }
            | Self::Profile { reference, .. }
            | Self::Presence { reference, .. }
            | Self::Error { reference, .. } => *reference,
            Self::Ready { .. } | Self::Typing { .. } | Self::TokenExpired { .. } => None,
        }
    }

    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        // Serializing these types cannot fail: no map has non-string keys.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The frame carrying a committed, edited or deleted message: `message`, `edit` or
/// `delete`, with the message.
pub fn message_frame(kind: &str, message: &Message) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        message: &'a Message,
    }
    serde_json::to_string(&Frame { kind, message }).unwrap_or_default()
}

/// One user's presence, as `presence` frames carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserPresence {
    pub user: crate::UserId,
    #[serde(flatten)]
    pub presence: crate::Presence,
}

/// The most users one `presence` frame asks about.
pub const MAX_PRESENCE_USERS: usize = 100;

/// Whether a `ref` is acceptable: a string of at most [`MAX_REF_CHARS`] characters, or a
/// number.
pub fn valid_ref(reference: &Ref) -> bool {
    match reference {
        Ref::String(text) => text.chars().count() <= MAX_REF_CHARS,
        Ref::Number(_) => true,
        _ => false,
    }
}
