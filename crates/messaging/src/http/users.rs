//! `/messaging/me`, `/messaging/presence`, `/messaging/users`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xcore_middleware::CurrentUser;

use super::{Api, Failure, TAG};
use crate::{Presence, User, UserId};

/// A user's profile and presence.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user": {"id": "42", "username": "ada", "metadata": {"lang": "fr"}, "created_at": "2026-12-01T09:00:00Z", "last_seen": "2026-12-01T09:05:00Z"}, "presence": {"online": true, "devices": 1, "last_seen": "2026-12-01T09:05:00Z"}}))]
pub struct Profile {
    pub user: User,
    pub presence: Presence,
}

/// The caller's messaging profile (created on first use) and presence.
#[utoipa::path(get, path = "/me", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Profile),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn me(
    State(api): State<Api>,
    user: CurrentUser,
) -> Result<Json<Profile>, Failure> {
    let id = api.me(&user).await?;
    let profile = api.engine.user(&id).await?;
    Ok(Json(Profile { presence: api.engine.presence(&id), user: profile }))
}

/// Changes to the caller's profile; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "ada", "metadata": {"lang": "fr"}}))]
pub struct ProfileChange {
    /// 1 to 64 characters, not all blank, no control characters.
    #[schema(min_length = 1, max_length = 64)]
    pub username: Option<String>,
    /// A JSON object, replacing the stored one.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Changes the caller's username or metadata.
#[utoipa::path(put, path = "/me", tag = TAG, security(("bearer" = [])), request_body = ProfileChange,
    responses(
        (status = 200, body = Profile),
        (status = 422, description = "`invalid_input`: a blank or long username, metadata that is not an object"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn update_me(
    State(api): State<Api>,
    user: CurrentUser,
    Json(change): Json<ProfileChange>,
) -> Result<Json<Profile>, Failure> {
    let id = api.me(&user).await?;
    let profile = api.engine.update_user(&id, change.username.as_deref(), change.metadata).await?;
    Ok(Json(Profile { presence: api.engine.presence(&id), user: profile }))
}

/// Keeps the caller online for `messaging.presence_ttl_secs` more: for clients without a
/// socket, called again before it runs out.
#[utoipa::path(post, path = "/presence", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Presence),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn renew_presence(
    State(api): State<Api>,
    user: CurrentUser,
) -> Result<Json<Presence>, Failure> {
    let id = api.me(&user).await?;
    Ok(Json(api.engine.renew_presence(&id).await?))
}

/// Ends what `POST /messaging/presence` started.
#[utoipa::path(delete, path = "/presence", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Presence),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn end_presence(
    State(api): State<Api>,
    user: CurrentUser,
) -> Result<Json<Presence>, Failure> {
    let id = api.me(&user).await?;
    Ok(Json(api.engine.end_presence(&id).await))
}

/// Who is online.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"users": ["42", "43"]}))]
pub struct Online {
    /// User ids, sorted.
    pub users: Vec<UserId>,
}

/// The users online now.
#[utoipa::path(get, path = "/users/online", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = Online),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn online(
    State(api): State<Api>,
    user: CurrentUser,
) -> Result<Json<Online>, Failure> {
    api.me(&user).await?;
    Ok(Json(Online { users: api.engine.online_users() }))
}

/// A user's profile and presence.
#[utoipa::path(get, path = "/users/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "the user's id")),
    responses(
        (status = 200, body = Profile),
        (status = 404, description = "`user_not_found`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn user(
    State(api): State<Api>,
    caller: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Profile>, Failure> {
    api.me(&caller).await?;
    let id = UserId::from(id);
    let user = api.engine.user(&id).await?;
    Ok(Json(Profile { presence: api.engine.presence(&id), user }))
}
