//! `/messaging/groups` and `/messaging/direct`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xcore_middleware::CurrentUser;

use super::{Api, Failure, TAG};
use crate::{Conversation, Member, Role, UserId};

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "tea", "members": ["43", "44"]}))]
pub struct NewGroup {
    /// 1 to 100 characters, not all blank, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Users to add as members; the caller is the owner.
    #[serde(default)]
    pub members: Vec<UserId>,
}

/// Creates a group owned by the caller.
#[utoipa::path(post, path = "/groups", tag = TAG, security(("bearer" = [])), request_body = NewGroup,
    responses(
        (status = 201, body = Conversation),
        (status = 404, description = "`user_not_found`: a member is unknown"),
        (status = 422, description = "`invalid_input`: a blank or long name"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn create(
    State(api): State<Api>,
    user: CurrentUser,
    Json(group): Json<NewGroup>,
) -> Result<(StatusCode, Json<Conversation>), Failure> {
    let me = api.me(&user).await?;
    Ok((StatusCode::CREATED, Json(api.engine.create_group(me, &group.name, &group.members).await?)))
}

/// A group's new name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "coffee"}))]
pub struct GroupChange {
    /// 1 to 100 characters, not all blank, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

/// Renames a group: its owners and admins.
#[utoipa::path(patch, path = "/groups/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the group's id")),
    request_body = GroupChange,
    responses(
        (status = 200, body = Conversation),
        (status = 403, description = "`forbidden`: not an owner or admin, or not a group"),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 422, description = "`invalid_input`: a blank or long name"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn rename(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(change): Json<GroupChange>,
) -> Result<Json<Conversation>, Failure> {
    let me = api.me(&user).await?;
    Ok(Json(api.engine.rename_group(&me, id, &change.name).await?))
}

/// Deletes a group and its messages: its owners.
#[utoipa::path(delete, path = "/groups/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the group's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, description = "`forbidden`: not an owner, or not a group"),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn delete(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, Failure> {
    let me = api.me(&user).await?;
    api.engine.delete_group(&me, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A conversation's members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"members": [{"user_id": "42", "username": "ada", "role": "owner", "joined_at": "2026-12-01T09:00:00Z", "last_read_seq": 12}]}))]
pub struct Members {
    /// Owners first, then admins, then members; by id within each.
    pub members: Vec<Member>,
}

/// The members of a group (or of any conversation the caller is in).
#[utoipa::path(get, path = "/groups/{id}/members", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the group's id")),
    responses(
        (status = 200, body = Members),
        (status = 404, description = "`conversation_not_found`: none, or the caller is not a member"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn members(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Members>, Failure> {
    let me = api.me(&user).await?;
    Ok(Json(Members { members: api.engine.members(&me, id).await? }))
}

/// A user to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "43", "role": "member"}))]
pub struct NewMember {
    pub user_id: UserId,
    /// `member` (the default); only owners add `admin` and `owner`.
    #[serde(default = "member")]
    pub role: Role,
}

fn member() -> Role {
    Role::Member
}

/// Adds a member: owners and admins (only owners add admins and owners).
#[utoipa::path(post, path = "/groups/{id}/members", tag = TAG, security(("bearer" = [])),
    params(("id" = i64, Path, description = "the group's id")),
    request_body = NewMember,
    responses(
        (status = 201, body = Member),
        (status = 403, description = "`forbidden`: the caller lacks the role, or not a group"),
        (status = 404, description = "`conversation_not_found` or `user_not_found`"),
        (status = 409, description = "`conflict`: a member already"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn add_member(
    State(api): State<Api>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(member): Json<NewMember>,
) -> Result<(StatusCode, Json<Member>), Failure> {
    let me = api.me(&user).await?;
    let added = api.engine.add_member(&me, id, &member.user_id, member.role).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// A member's new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "admin"}))]
pub struct RoleChange {
    pub role: Role,
}

/// Changes a member's role: owners only; a group keeps at least one owner.
#[utoipa::path(patch, path = "/groups/{id}/members/{user_id}", tag = TAG, security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "the group's id"),
        ("user_id" = String, Path, description = "the member's user id"),
    ),
    request_body = RoleChange,
    responses(
        (status = 200, body = Member),
        (status = 403, description = "`forbidden`: not an owner, or not a group"),
        (status = 404, description = "`conversation_not_found` or `member_not_found`"),
        (status = 409, description = "`conflict`: the last owner"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn set_role(
    State(api): State<Api>,
    user: CurrentUser,
    Path((id, member)): Path<(i64, String)>,
    Json(change): Json<RoleChange>,
) -> Result<Json<Member>, Failure> {
    let me = api.me(&user).await?;
    Ok(Json(api.engine.set_role(&me, id, &UserId::from(member), change.role).await?))
}

/// Removes a member, or leaves when it is the caller: owners and admins remove members,
/// only owners remove admins and owners; the last owner cannot leave.
#[utoipa::path(delete, path = "/groups/{id}/members/{user_id}", tag = TAG, security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "the group's id"),
        ("user_id" = String, Path, description = "the member's user id"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 403, description = "`forbidden`: the caller lacks the role, or not a group"),
        (status = 404, description = "`conversation_not_found` or `member_not_found`"),
        (status = 409, description = "`conflict`: the last owner"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn remove_member(
    State(api): State<Api>,
    user: CurrentUser,
    Path((id, member)): Path<(i64, String)>,
) -> Result<StatusCode, Failure> {
    let me = api.me(&user).await?;
    api.engine.remove_member(&me, id, &UserId::from(member)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The other user of a direct conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "43"}))]
pub struct Peer {
    pub user_id: UserId,
}

/// The caller's direct conversation with another user, created on first use (with
/// themselves: their notes to self).
#[utoipa::path(post, path = "/direct", tag = TAG, security(("bearer" = [])), request_body = Peer,
    responses(
        (status = 200, body = Conversation),
        (status = 404, description = "`user_not_found`"),
        (status = 503, description = "`service_unavailable`: the store cannot be reached"),
    ))]
pub(super) async fn direct(
    State(api): State<Api>,
    user: CurrentUser,
    Json(peer): Json<Peer>,
) -> Result<Json<Conversation>, Failure> {
    let me = api.me(&user).await?;
    Ok(Json(api.engine.direct(&me, &peer.user_id).await?))
}
