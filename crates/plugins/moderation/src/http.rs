//! The moderators' API, mounted at `/plugins/moderation`.
//!
//! Every route is behind [`require`]`("messaging.moderate")`: 401 without a valid token,
//! 403 `forbidden` without the permission, before the request is read any further. The
//! caller is the moderator the actions are recorded under (their account id).
//!
//! The document states every check the handlers make (lengths, patterns, ranges, no
//! unknown field, no `null` where a value is typed), and the handlers make every check the
//! document states, so that a request it calls valid is accepted and one it calls invalid
//! is refused with a 4xx error, changing nothing: 422 `invalid_input` for a body, 400
//! `bad_request` for a path or query parameter. An integral number such as `30.0` is an
//! integer, as JSON Schema has it.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{IntoParams, OpenApi as _, ToSchema};
use utoipa_axum::routes;
use xcore_core::Routes;
use xcore_core::http::{ApiError, BearerScheme};
use xcore_messaging::{Engine, Message, UserId};
use xcore_middleware::{CurrentUser, require};

use crate::{Action, ActionFilter, Error, Moderation, Sanction, SanctionKind};

/// The tag of every moderation operation.
const TAG: &str = "moderation";

/// The permission every route needs: the one that makes a caller a moderator of every
/// conversation in `/messaging`.
pub const MODERATE: &str = xcore_messaging::http::MODERATE;

/// The longest user id, in characters (the engine's limit).
const MAX_USER_ID: usize = 128;
/// The longest reason, in characters.
pub const MAX_REASON: usize = 500;
/// The longest mute with an end, in minutes: a hundred years.
pub const MAX_MINUTES: i64 = 52_560_000;
/// Actions per page: by default, and at most.
const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// No control character anywhere, and at least one character that is not blank: what
/// [`user_id`] accepts (`char::is_control`, `char::is_whitespace`), as the messaging
/// document states it for names.
const USER_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*\
    [^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]\
    [^\\u0000-\\u001F\\u007F-\\u009F]*$";

#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    tags((name = "moderation", description = "Mutes, bans, deletions and the record of moderation actions, for holders of `messaging.moderate`."))
)]
struct ModerationDoc;

/// What the handlers share.
#[derive(Clone)]
struct Api {
    engine: Engine,
    moderation: Moderation,
}

/// The moderation endpoints, relative to where they are mounted (the plugin mounts them
/// at `/plugins/moderation`), each guarded by [`MODERATE`].
pub fn router(engine: Engine, moderation: Moderation) -> Routes {
    let mut routes = Routes::with_openapi(ModerationDoc::openapi())
        .routes(routes!(mute, mutes))
        .routes(routes!(unmute))
        .routes(routes!(ban, bans))
        .routes(routes!(unban))
        .routes(routes!(delete_message))
        .routes(routes!(actions))
        .layer(require(MODERATE))
        .with_state(Api { engine, moderation });
    complete(routes.openapi_mut());
    routes
}

/// Mutes a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user": "42", "minutes": 30, "reason": "flooding"}))]
pub struct NewMute {
    /// The user's id.
    pub user: String,
    /// How long, in minutes; left out, the mute lasts until it is lifted.
    #[serde(default, deserialize_with = "integer")]
    #[schema(value_type = i64, minimum = 1, maximum = 52_560_000)]
    pub minutes: Option<i64>,
    /// Why, for the record.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = String, max_length = 500)]
    pub reason: Option<String>,
}

/// Bans a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user": "42", "reason": "spam"}))]
pub struct NewBan {
    /// The user's id.
    pub user: String,
    /// Why, for the record.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = String, max_length = 500)]
    pub reason: Option<String>,
}

/// Mutes or bans in force.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Sanctions {
    /// The most recent first.
    pub sanctions: Vec<Sanction>,
}

/// A page of recorded actions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Actions {
    /// The newest first.
    pub actions: Vec<Action>,
    /// The `before` of the next page; `null` when this one is the last.
    pub next: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReasonParams {
    /// Why, for the record.
    #[param(max_length = 500)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ActionParams {
    /// Only the actions on this user.
    user: Option<String>,
    /// Only the actions with a smaller id: the previous page's `next`.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    before: Option<i64>,
    /// How many (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// Mutes a user: their messages and edits are refused with `muted` until the mute ends
/// or is lifted. A mute they have is replaced.
#[utoipa::path(post, path = "/mutes", tag = TAG, security(("bearer" = [])),
    request_body = NewMute,
    responses(
        (status = 201, body = Sanction),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 404, description = "`user_not_found`: no messaging user with this id"),
        (status = 422, description = "`invalid_input`: an invalid user id, duration or reason"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn mute(
    State(api): State<Api>,
    moderator: CurrentUser,
    Json(body): Json<NewMute>,
) -> Result<(StatusCode, Json<Sanction>), ApiError> {
    let user = user_id(&body.user).map_err(|reason| invalid("user", reason))?;
    let minutes = match body.minutes {
        Some(minutes) if !(1..=MAX_MINUTES).contains(&minutes) => {
            return Err(invalid("minutes", format!("must be 1 to {MAX_MINUTES}")));
        }
        minutes => minutes.map(|minutes| Duration::from_secs(minutes.unsigned_abs() * 60)),
    };
    let reason = reason(body.reason.as_deref()).map_err(|reason| invalid("reason", reason))?;
    api.existing(&user).await?;
    let by = UserId::from(moderator.user_id);
    let sanction = api.moderation.mute(&by, &user, minutes, reason).await.map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(sanction)))
}

/// The mutes in force.
#[utoipa::path(get, path = "/mutes", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Sanctions),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn mutes(State(api): State<Api>) -> Result<Json<Sanctions>, ApiError> {
    let sanctions = api.moderation.sanctions(SanctionKind::Mute).await.map_err(api_error)?;
    Ok(Json(Sanctions { sanctions }))
}

/// Lifts a user's mute.
#[utoipa::path(delete, path = "/mutes/{user}", tag = TAG, security(("bearer" = [])),
    params(("user" = String, Path, description = "the user's id"), ReasonParams),
    responses(
        (status = 204, description = "lifted"),
        (status = 400, description = "`bad_request`: an invalid user id or reason"),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 404, description = "`not_muted`: the user has no mute in force"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn unmute(
    State(api): State<Api>,
    moderator: CurrentUser,
    Path(user): Path<String>,
    Query(params): Query<ReasonParams>,
) -> Result<StatusCode, ApiError> {
    let (user, reason) = lifting(&user, params.reason.as_deref())?;
    let by = UserId::from(moderator.user_id);
    if api.moderation.unmute(&by, &user, reason).await.map_err(api_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_muted", format!("`{user}` is not muted")))
    }
}

/// Bans a user: their messages and edits are refused with `banned` until the ban is
/// lifted.
#[utoipa::path(post, path = "/bans", tag = TAG, security(("bearer" = [])),
    request_body = NewBan,
    responses(
        (status = 201, body = Sanction),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 404, description = "`user_not_found`: no messaging user with this id"),
        (status = 422, description = "`invalid_input`: an invalid user id or reason"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn ban(
    State(api): State<Api>,
    moderator: CurrentUser,
    Json(body): Json<NewBan>,
) -> Result<(StatusCode, Json<Sanction>), ApiError> {
    let user = user_id(&body.user).map_err(|reason| invalid("user", reason))?;
    let reason = reason(body.reason.as_deref()).map_err(|reason| invalid("reason", reason))?;
    api.existing(&user).await?;
    let by = UserId::from(moderator.user_id);
    let sanction = api.moderation.ban(&by, &user, reason).await.map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(sanction)))
}

/// The bans in force.
#[utoipa::path(get, path = "/bans", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Sanctions),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn bans(State(api): State<Api>) -> Result<Json<Sanctions>, ApiError> {
    let sanctions = api.moderation.sanctions(SanctionKind::Ban).await.map_err(api_error)?;
    Ok(Json(Sanctions { sanctions }))
}

/// Lifts a user's ban.
#[utoipa::path(delete, path = "/bans/{user}", tag = TAG, security(("bearer" = [])),
    params(("user" = String, Path, description = "the user's id"), ReasonParams),
    responses(
        (status = 204, description = "lifted"),
        (status = 400, description = "`bad_request`: an invalid user id or reason"),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 404, description = "`not_banned`: the user is not banned"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn unban(
    State(api): State<Api>,
    moderator: CurrentUser,
    Path(user): Path<String>,
    Query(params): Query<ReasonParams>,
) -> Result<StatusCode, ApiError> {
    let (user, reason) = lifting(&user, params.reason.as_deref())?;
    let by = UserId::from(moderator.user_id);
    if api.moderation.unban(&by, &user, reason).await.map_err(api_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_banned", format!("`{user}` is not banned")))
    }
}

/// Deletes any message (its number stays, with an empty body), as a moderator.
/// Deleting a deleted message changes and records nothing.
#[utoipa::path(delete, path = "/messages/{conversation}/{seq}", tag = TAG,
    security(("bearer" = [])),
    params(
        ("conversation" = i64, Path, description = "the conversation's id"),
        ("seq" = i64, Path, description = "the message's sequence number"),
        ReasonParams,
    ),
    responses(
        (status = 200, body = Message),
        (status = 400, description = "`bad_request`: an invalid reason"),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 404, description = "`conversation_not_found` or `message_not_found`"),
        (status = 409, description = "`conflict`: the message is being changed by others; try again"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn delete_message(
    State(api): State<Api>,
    moderator: CurrentUser,
    Path((conversation, seq)): Path<(i64, i64)>,
    Query(params): Query<ReasonParams>,
) -> Result<Json<Message>, ApiError> {
    let reason = reason(params.reason.as_deref()).map_err(|reason| bad("reason", reason))?;
    let by = UserId::from(moderator.user_id);
    let message = api
        .moderation
        .delete_message(&api.engine, &by, conversation, seq, reason)
        .await
        .map_err(api_error)?;
    Ok(Json(message))
}

/// Recorded actions, the newest first, a page at a time: pass a page's `next` as
/// `before` for the next one.
#[utoipa::path(get, path = "/actions", tag = TAG, security(("bearer" = [])),
    params(ActionParams),
    responses(
        (status = 200, body = Actions),
        (status = 400, description = "`bad_request`: an invalid user id, cursor or limit"),
        (status = 403, description = "`forbidden`: the caller lacks `messaging.moderate`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
async fn actions(
    State(api): State<Api>,
    Query(params): Query<ActionParams>,
) -> Result<Json<Actions>, ApiError> {
    let user = params.user.as_deref().map(user_id).transpose().map_err(|r| bad("user", r))?;
    if params.before.is_some_and(|before| before < 1) {
        return Err(bad("before", "must be at least 1".to_owned()));
    }
    let limit = match params.limit {
        None => DEFAULT_PAGE,
        Some(limit) => u32::try_from(limit)
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| bad("limit", format!("must be 1 to {MAX_PAGE}")))?,
    };
    let filter = ActionFilter { user, before: params.before, limit };
    let actions = api.moderation.actions(&filter).await.map_err(api_error)?;
    let full = actions.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if full { actions.last().map(|action| action.id) } else { None };
    Ok(Json(Actions { actions, next }))
}

impl Api {
    /// Checks `user` is a messaging user: a sanction on an id nobody has is a typo.
    async fn existing(&self, user: &UserId) -> Result<(), ApiError> {
        self.engine.user(user).await.map(drop).map_err(|error| api_error(error.into()))
    }
}

/// The user and reason of a `DELETE` lifting a sanction, from its path and query.
fn lifting<'a>(user: &str, reason: Option<&'a str>) -> Result<(UserId, Option<&'a str>), ApiError> {
    let user = user_id(user).map_err(|reason| bad("user", reason))?;
    Ok((user, self::reason(reason).map_err(|reason| bad("reason", reason))?))
}

/// A user id as the engine takes it: 1 to 128 characters, not all blank, no control
/// character ([`USER_PATTERN`]).
fn user_id(text: &str) -> Result<UserId, String> {
    let count = text.chars().count();
    if count == 0 || count > MAX_USER_ID || text.chars().all(char::is_whitespace) {
        return Err(format!("must be 1 to {MAX_USER_ID} characters, not all blank"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(UserId::from(text))
}

/// A reason of at most [`MAX_REASON`] characters.
fn reason(text: Option<&str>) -> Result<Option<&str>, String> {
    match text {
        Some(text) if text.chars().count() > MAX_REASON => {
            Err(format!("must be at most {MAX_REASON} characters"))
        }
        text => Ok(text),
    }
}

/// 422 `invalid_input`: a body field the document refuses.
fn invalid(field: &str, reason: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("`{field}` {reason}"))
}

/// 400 `bad_request`: a path or query parameter the document refuses.
fn bad(field: &str, reason: String) -> ApiError {
    ApiError::bad_request(format!("`{field}` {reason}"))
}

/// The plugin's and the engine's errors as HTTP answers; the store's details go to the log.
fn api_error(error: Error) -> ApiError {
    use xcore_messaging::Error as E;
    let unavailable = |detail: &dyn std::fmt::Display| {
        tracing::warn!(plugin = "moderation", %detail, "moderation request failed: the store is unavailable");
        ApiError::unavailable("moderation is unavailable; try again")
    };
    let (status, code) = match &error {
        Error::Invalid { .. } | Error::Messaging(E::Invalid { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
        }
        Error::Messaging(E::UnknownUser(_)) => (StatusCode::NOT_FOUND, "user_not_found"),
        Error::Messaging(E::UnknownConversation(_)) => {
            (StatusCode::NOT_FOUND, "conversation_not_found")
        }
        Error::Messaging(E::UnknownMessage { .. }) => (StatusCode::NOT_FOUND, "message_not_found"),
        Error::Messaging(E::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
        Error::Messaging(E::Forbidden(_)) => (StatusCode::FORBIDDEN, "forbidden"),
        Error::Messaging(E::Store(detail)) => return unavailable(detail),
        Error::Store(detail) => return unavailable(detail),
        Error::Unrecorded(detail) => {
            tracing::warn!(plugin = "moderation", %detail, "a deletion was not recorded");
            return ApiError::unavailable(
                "the message was deleted, but the action could not be recorded",
            );
        }
        Error::Messaging(E::Stopped) => {
            return ApiError::unavailable("messaging is stopping; try again");
        }
        Error::Messaging(other) => {
            tracing::warn!(plugin = "moderation", error = %other, "unexpected messaging error");
            return ApiError::internal();
        }
    };
    ApiError::new(status, code, error.to_string())
}

/// An optional integer as JSON Schema has it: `30` or `30.0`, never `null`.
fn integer<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(value) = number.as_i64() {
        return Ok(Some(value));
    }
    match number.as_f64() {
        // Within ±2^63, where every integral `f64` is an `i64`.
        Some(value) if value.fract() == 0.0 && value.abs() < 9.2e18 => Ok(Some(value as i64)),
        _ => Err(serde::de::Error::custom(format!("expected an integer, got {number}"))),
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

/// States in `doc` what annotations cannot: the user-id rules on every `user`, in bodies,
/// paths and queries.
fn complete(doc: &mut OpenApi) {
    if let Some(components) = doc.components.as_mut() {
        for name in ["NewMute", "NewBan"] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name)
                && let Some(RefOr::T(Schema::Object(user))) = object.properties.get_mut("user")
            {
                user_schema(user);
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post, &mut item.delete] {
            let parameters =
                operation.as_mut().and_then(|op: &mut Operation| op.parameters.as_mut());
            for parameter in parameters.into_iter().flatten() {
                if let RefOr::T(parameter) = parameter {
                    user_parameter(parameter);
                }
            }
        }
    }
}

fn user_parameter(parameter: &mut Parameter) {
    if parameter.name == "user"
        && let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut()
    {
        user_schema(schema);
    }
}

fn user_schema(object: &mut Object) {
    object.min_length = Some(1);
    object.max_length = Some(MAX_USER_ID);
    object.pattern = Some(USER_PATTERN.to_owned());
}
