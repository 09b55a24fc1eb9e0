//! `/messaging/conversations`: the caller's conversations, their messages and read
//! markers.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use xcore_middleware::CurrentUser;

use super::{Api, Failure, TAG};
use crate::{Conversation, ConversationSummary, Draft, Error, Message, Page};

/// The caller's conversations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"conversations": [{"id": 2, "kind": "group", "name": "tea", "last_seq": 12, "created_at": "2026-12-01T09:00:00Z", "role": "owner", "last_read_seq": 10, "unread": 2, "peer": null}]}))]
pub struct Conversations {
    /// The most recently active first.
    pub conversations: Vec<ConversationSummary>,
}

/// The conversations the caller is a member of (the lobby, groups, direct), with unread
/// counts.
#[utoipa::path(get, path = "/conversations", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Conversations),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn list(
    State(api): State<Api>,
    user: CurrentUser,
) -> Result<Json<Conversations>, Failure> {
    let id = api.me(&user).await?;
    Ok(Json(Conversations { conversations: api.engine.conversations(&id).await? }))
}

/// A conversation the caller is a member of.
#[utoipa::path(get, path = "/conversations/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the conversation's id")),
    responses(
        (status = 200, body = Conversation),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn get(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Conversation>, Failure> {
    let me = api.me(&user).await?;
    Ok(Json(api.engine.conversation(&me, id).await?))
}

/// A message as the API takes it: a text, an attachment, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The text: 1 to `messaging.max_message_chars` characters, not all blank. It may be
    /// left out when there is an attachment.
    #[serde(default, deserialize_with = "not_null")]
    pub body: Option<String>,
    /// A JSON object describing attached files (names, types, URLs): at most
    /// `messaging.max_attachment_bytes` once serialized. Leave it out for none.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = Object)]
    pub attachment: Option<serde_json::Map<String, serde_json::Value>>,
}

impl NewMessage {
    fn into_draft(self) -> Result<Draft, Error> {
        if self.body.as_deref().is_some_and(|body| body.trim().is_empty()) {
            return Err(Error::Invalid { field: "body", reason: "must not be blank".to_owned() });
        }
        Ok(Draft {
            body: self.body.unwrap_or_default(),
            attachment: self.attachment.map(serde_json::Value::Object),
        })
    }
}

/// A value that is there, and not `null`: an absent field is left out.
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Sends a message; answered once it is stored.
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the conversation's id")),
    request_body(content = NewMessage, example = json!({"body": "Hello!", "attachment": {"name": "tea.png", "type": "image/png", "url": "https://example.com/tea.png"}})),
    responses(
        (status = 201, body = Message),
        (status = 403, description = "refused by a plugin (`muted`, `banned`, `word_refused`, `storage_quota_exceeded`, …)"),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 422, description = "`invalid_input`: an empty or oversized body or attachment"),
        (status = 429, description = "`rate_limited` or `quota_exceeded`: sending again succeeds after `Retry-After`",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "`service_unavailable`: the store cannot be reached; nothing was stored"),
    ))]
pub(super) async fn send(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(draft): Json<NewMessage>,
) -> Result<(StatusCode, Json<Message>), Failure> {
    let me = api.me(&user).await?;
    Ok((StatusCode::CREATED, Json(api.engine.send(me, id, draft.into_draft()?).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryParams {
    /// Messages before this sequence number (the closest ones).
    before: Option<i64>,
    /// Messages after this sequence number (the closest ones). With `before` too, the
    /// messages between the two, the closest to `after` first: a gap to fill.
    after: Option<i64>,
    /// How many (default 50; 0 is read as 1, and more than `messaging.max_page` as that).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4_294_967_295_u64)]
    limit: Option<u32>,
}

/// Messages of a conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"messages": [{"id": 7, "conversation_id": 2, "seq": 12, "sender_id": "42", "body": "Hello!", "attachment": null, "created_at": "2026-12-01T09:00:00Z", "edited_at": null, "deleted": false}]}))]
pub struct Messages {
    /// Oldest first.
    pub messages: Vec<Message>,
}

/// A page of history, oldest first: the latest messages, those before or after a
/// sequence number, or those between two.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the conversation's id"), HistoryParams),
    responses(
        (status = 200, body = Messages),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn history(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<Messages>, Failure> {
    let actor = api.actor(&user).await?;
    let limit = params.limit.unwrap_or(50).clamp(1, api.engine.config().max_page);
    let page = match (params.before, params.after) {
        (None, None) => Page::Latest { limit },
        (Some(seq), None) => Page::Before { seq, limit },
        (None, Some(seq)) => Page::After { seq, limit },
        (Some(before), Some(after)) => Page::Between { after, before, limit },
    };
    Ok(Json(Messages { messages: api.engine.history(&actor, id, page).await? }))
}

/// One message.
#[utoipa::path(get, path = "/conversations/{id}/messages/{seq}", tag = TAG, security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "the conversation's id"),
        ("seq" = i64, Path, description = "the message's sequence number"),
    ),
    responses(
        (status = 200, body = Message),
        (status = 404, description = "`conversation_not_found` or `message_not_found`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn message(
    State(api): State<Api>,
    user: CurrentUser,
    Path((id, seq)): Path<(i64, i64)>,
) -> Result<Json<Message>, Failure> {
    let actor = api.actor(&user).await?;
    Ok(Json(api.engine.message(&actor, id, seq).await?))
}

/// Edits a message: its sender, a group's owners and admins, or a moderator.
#[utoipa::path(patch, path = "/conversations/{id}/messages/{seq}", tag = TAG, security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "the conversation's id"),
        ("seq" = i64, Path, description = "the message's sequence number"),
    ),
    request_body(content = NewMessage, example = json!({"body": "Hello, all!"})),
    responses(
        (status = 200, body = Message),
        (status = 403, description = "`forbidden`: not the sender, an admin or a moderator; or refused by a plugin"),
        (status = 404, description = "`conversation_not_found` or `message_not_found`"),
        (status = 409, description = "`conflict`: the message is deleted"),
        (status = 422, description = "`invalid_input`: an empty or oversized body or attachment"),
        (status = 429, description = "refused by a plugin until `Retry-After`",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn edit(
    State(api): State<Api>,
    user: CurrentUser,
    Path((id, seq)): Path<(i64, i64)>,
    Json(draft): Json<NewMessage>,
) -> Result<Json<Message>, Failure> {
    let actor = api.actor(&user).await?;
    Ok(Json(api.engine.edit_message(&actor, id, seq, draft.into_draft()?).await?))
}

/// Deletes a message (its number stays, with an empty body): its sender, a group's owners
/// and admins, or a moderator. Deleting it again changes nothing.
#[utoipa::path(delete, path = "/conversations/{id}/messages/{seq}", tag = TAG, security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "the conversation's id"),
        ("seq" = i64, Path, description = "the message's sequence number"),
    ),
    responses(
        (status = 200, body = Message),
        (status = 403, description = "`forbidden`: not the sender, an admin or a moderator"),
        (status = 404, description = "`conversation_not_found` or `message_not_found`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn delete(
    State(api): State<Api>,
    user: CurrentUser,
    Path((id, seq)): Path<(i64, i64)>,
) -> Result<Json<Message>, Failure> {
    let actor = api.actor(&user).await?;
    Ok(Json(api.engine.delete_message(&actor, id, seq).await?))
}

/// Where the caller has read to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"seq": 12}))]
pub struct ReadMarker {
    /// A sequence number; one past the conversation's `last_seq` counts as `last_seq`.
    /// Markers only move forward.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "super::integer")]
    pub seq: i64,
}

/// Marks a conversation read up to `seq`; answers the marker (which never moves back).
#[utoipa::path(put, path = "/conversations/{id}/read", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the conversation's id")),
    request_body = ReadMarker,
    responses(
        (status = 200, body = ReadMarker),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn mark_read(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(marker): Json<ReadMarker>,
) -> Result<Json<ReadMarker>, Failure> {
    let me = api.me(&user).await?;
    Ok(Json(ReadMarker { seq: api.engine.mark_read(&me, id, marker.seq).await? }))
}
