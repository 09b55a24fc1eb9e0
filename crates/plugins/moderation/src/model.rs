//! What the moderation tables hold, and the types the API answers with: sanctions, the
//! record of actions, and the rows they are read from.
//!
//! Stored times are UTC without an offset (both backends alike); the answer types carry
//! [`DateTime<Utc>`], which serializes as RFC 3339.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::result::Error as DieselError;
use diesel::{Insertable, Queryable, Selectable};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xcore_messaging::{ConversationId, UserId};

diesel::table! {
    moderation_sanctions (user_id, kind) {
        user_id -> Text,
        kind -> Text,
        ends_at -> Nullable<Timestamp>,
        reason -> Nullable<Text>,
        actor -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    moderation_actions (id) {
        id -> BigInt,
        created_at -> Timestamp,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        conversation_id -> Nullable<BigInt>,
        seq -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        ends_at -> Nullable<Timestamp>,
    }
}

pub(crate) use moderation_actions as actions;
pub(crate) use moderation_sanctions as sanctions;

/// The actor of the actions the word filter takes.
pub const WORD_FILTER: &str = "word_filter";
/// A mute or a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SanctionKind {
    /// Sends and edits are refused with `muted` until the mute ends or is lifted.
    Mute,
    /// Sends and edits are refused with `banned` until the ban is lifted.
    Ban,
}

impl SanctionKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Ban => "ban",
        }
    }
}

/// A mute or ban in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user": "42", "kind": "mute", "until": "2026-12-05T10:30:00Z", "reason": "flooding", "by": "7", "since": "2026-12-05T10:00:00Z"}))]
pub struct Sanction {
    /// The sanctioned user.
    pub user: UserId,
    pub kind: SanctionKind,
    /// When a mute ends; `null` until a moderator lifts it (always for a ban).
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// The moderator who imposed it.
    pub by: String,
    /// When it was imposed.
    pub since: DateTime<Utc>,
}

/// What a recorded action was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Mute,
    Unmute,
    Ban,
    Unban,
    /// A moderator deleted a message.
    Delete,
    /// The word filter refused a message or an edit.
    Refuse,
    /// The word filter masked words in a message or an edit.
    Mask,
}

impl ActionKind {
    const ALL: [Self; 7] =
        [Self::Mute, Self::Unmute, Self::Ban, Self::Unban, Self::Delete, Self::Refuse, Self::Mask];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Unmute => "unmute",
            Self::Ban => "ban",
            Self::Unban => "unban",
            Self::Delete => "delete",
            Self::Refuse => "refuse",
            Self::Mask => "mask",
        }
    }
}

/// A recorded moderation action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 12, "at": "2026-12-05T10:00:00Z", "actor": "7", "action": "mute", "user": "42", "conversation": null, "seq": null, "reason": "flooding", "until": "2026-12-05T10:30:00Z"}))]
pub struct Action {
    /// Increasing: later actions have larger ids (the cursor of `GET /actions`).
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The moderator's user id, or `word_filter` for the word filter's actions.
    pub actor: String,
    pub action: ActionKind,
    /// The user acted on: the sanctioned user, or the sender of the message.
    pub user: Option<UserId>,
    /// The conversation of a deleted, refused or masked message.
    pub conversation: Option<i64>,
    /// The sequence number of a deleted message or of an edited one; `null` for a new
    /// message the filter refused or masked (it had no number yet).
    pub seq: Option<i64>,
    pub reason: Option<String>,
    /// When a mute ends; `null` otherwise.
    pub until: Option<DateTime<Utc>>,
}

/// Which recorded actions to read: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    /// Only those acting on this user.
    pub user: Option<UserId>,
    /// Only those with an id below this one: the next page after one ending there.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = moderation_sanctions)]
pub(crate) struct SanctionRow {
    user_id: String,
    kind: String,
    ends_at: Option<NaiveDateTime>,
    reason: Option<String>,
    actor: String,
    created_at: NaiveDateTime,
}

impl SanctionRow {
    pub(crate) fn into_sanction(self) -> Sanction {
        Sanction {
            user: UserId::from(self.user_id),
            kind: if self.kind == SanctionKind::Ban.as_str() {
                SanctionKind::Ban
            } else {
                SanctionKind::Mute
            },
            until: self.ends_at.map(|end| end.and_utc()),
            reason: self.reason,
            by: self.actor,
            since: self.created_at.and_utc(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = moderation_actions)]
pub(crate) struct ActionRow {
    id: i64,
    created_at: NaiveDateTime,
    actor: String,
    action: String,
    target: Option<String>,
    conversation_id: Option<i64>,
    seq: Option<i64>,
    reason: Option<String>,
    ends_at: Option<NaiveDateTime>,
}

impl TryFrom<ActionRow> for Action {
    type Error = DieselError;

    fn try_from(row: ActionRow) -> Result<Self, DieselError> {
        let action = ActionKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == row.action)
            .ok_or_else(|| {
                DieselError::DeserializationError(
                    format!("unknown moderation action `{}`", row.action).into(),
                )
            })?;
        Ok(Self {
            id: row.id,
            at: row.created_at.and_utc(),
            actor: row.actor,
            action,
            user: row.target.map(UserId::from),
            conversation: row.conversation_id,
            seq: row.seq,
            reason: row.reason,
            until: row.ends_at.map(|end| end.and_utc()),
        })
    }
}

/// An action to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = moderation_actions)]
pub(crate) struct Entry {
    pub(crate) created_at: NaiveDateTime,
    actor: String,
    action: &'static str,
    target: Option<String>,
    conversation_id: Option<i64>,
    seq: Option<i64>,
    reason: Option<String>,
    pub(crate) ends_at: Option<NaiveDateTime>,
}

impl Entry {
    pub(crate) fn new(actor: &str, action: ActionKind, target: &UserId) -> Self {
        Self {
            created_at: Utc::now().naive_utc(),
            actor: actor.to_owned(),
            action: action.as_str(),
            target: Some(target.to_string()),
            conversation_id: None,
            seq: None,
            reason: None,
            ends_at: None,
        }
    }

    pub(crate) fn at(mut self, conversation: ConversationId, seq: Option<i64>) -> Self {
        self.conversation_id = Some(conversation);
        self.seq = seq;
        self
    }

    pub(crate) fn reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }
}
