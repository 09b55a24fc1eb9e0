//! The `/messaging` API: the engine over HTTP, for signed-in callers.
//!
//! The caller is the signed-in account ([`CurrentUser`]); its messaging user has the
//! account's id and is created on its first call (username `user<id>`, changed with
//! `PUT /messaging/me`). A conversation the caller is not a member of answers 404, as one
//! that does not exist; a member without the right gets 403. Callers whose roles grant
//! `messaging.moderate` edit and delete any message and read any conversation.

mod conversations;
mod document;
mod groups;
mod users;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize as _;
use utoipa::OpenApi;
use utoipa_axum::routes;
use xcore_core::Routes;
use xcore_core::http::{ApiError, BearerScheme};
use xcore_middleware::{CurrentUser, Gate};

use crate::{Actor, Engine, Error, UserId};

/// The tag of every messaging operation.
const TAG: &str = "messaging";

/// The permission that makes a caller a moderator of every conversation.
pub const MODERATE: &str = "messaging.moderate";

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    tags((name = "messaging", description = "Users and presence, groups, direct conversations, messages."))
)]
struct MessagingDoc;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    engine: Engine,
    gate: Gate,
    /// Accounts whose messaging user is known to exist.
    known: moka::sync::Cache<i64, ()>,
}

impl Api {
    /// The caller's messaging user, created on first use.
    async fn me(&self, user: &CurrentUser) -> Result<UserId, ApiError> {
        let id = UserId::from(user.user_id);
        if self.known.contains_key(&user.user_id) {
            return Ok(id);
        }
        match self.engine.user(&id).await {
            Ok(_) => {}
            Err(Error::UnknownUser(_)) => {
                let username = format!("user{}", user.user_id);
                match self.engine.register_user(id.clone(), &username, serde_json::json!({})).await
                {
                    Ok(_) | Err(Error::UserExists(_)) => {}
                    Err(error) => return Err(api_error(error)),
                }
            }
            Err(error) => return Err(api_error(error)),
        }
        self.known.insert(user.user_id, ());
        Ok(id)
    }

    /// The caller as an actor: a moderator when their roles grant [`MODERATE`].
    async fn actor(&self, user: &CurrentUser) -> Result<Actor, ApiError> {
        let id = self.me(user).await?;
        Ok(Actor { user: id, moderator: self.gate.allows(user, MODERATE) })
    }
}

/// The messaging endpoints, relative to where they are mounted (the module mounts them at
/// `/messaging`). Callers are authenticated by `gate`.
pub fn router(engine: Engine, gate: Gate) -> Routes {
    let config = engine.config().clone();
    let api = Api { engine, gate, known: moka::sync::Cache::new(100_000) };
    let mut routes = Routes::with_openapi(MessagingDoc::openapi())
        .routes(routes!(users::me, users::update_me))
        .routes(routes!(users::renew_presence, users::end_presence))
        .routes(routes!(users::online))
        .routes(routes!(users::user))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::get))
        .routes(routes!(conversations::send, conversations::history))
        .routes(routes!(conversations::message, conversations::edit, conversations::delete))
        .routes(routes!(conversations::mark_read))
        .routes(routes!(groups::create))
        .routes(routes!(groups::rename, groups::delete))
        .routes(routes!(groups::members, groups::add_member))
        .routes(routes!(groups::set_role, groups::remove_member))
        .routes(routes!(groups::direct))
        .with_state(api);
    document::complete(routes.openapi_mut(), &config);
    routes
}

/// An integer as JSON Schema has it: `12` or `12.0` (serde alone refuses the second).
pub(crate) fn integer<'de, D>(deserializer: D) -> Result<i64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(value) = number.as_i64() {
        return Ok(value);
    }
    match number.as_f64() {
        // Within ±2^63, where every integral `f64` is an `i64`.
        Some(value) if value.fract() == 0.0 && value.abs() < 9.2e18 => Ok(value as i64),
        _ => Err(serde::de::Error::custom(format!("expected an integer, got {number}"))),
    }
}

/// The engine's refusals as HTTP answers.
pub(crate) fn api_error(error: Error) -> ApiError {
    use StatusCode as S;
    let status = match &error {
        Error::UnknownUser(_)
        | Error::UnknownConversation(_)
        | Error::NotMember { .. }
        | Error::UnknownMessage { .. } => S::NOT_FOUND,
        Error::UserExists(_) | Error::Offline(_) | Error::Conflict(_) => S::CONFLICT,
        Error::Forbidden(_) => S::FORBIDDEN,
        Error::Invalid { .. } => S::UNPROCESSABLE_ENTITY,
        Error::Refused(refusal) => {
            let status =
                if refusal.retry_after.is_some() { S::TOO_MANY_REQUESTS } else { S::FORBIDDEN };
            return ApiError::new(status, refusal.code.clone(), refusal.message.clone());
        }
        Error::Store(detail) => {
            tracing::warn!(plugin = "messaging", %detail, "messaging request failed: the store is unavailable");
            return ApiError::unavailable("messaging is unavailable; try again");
        }
        Error::Stopped => return ApiError::unavailable("messaging is stopping; try again"),
    };
    ApiError::new(status, error.code().to_owned(), error.to_string())
}

/// What a handler fails with: an engine error (a refusal lifted with time carries
/// `Retry-After`), or an error of the API itself.
pub(crate) enum Failure {
    Engine(Error),
    Api(ApiError),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Engine(error)
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let error = match self {
            Self::Api(error) => return error.into_response(),
            Self::Engine(error) => error,
        };
        let retry = match &error {
            Error::Refused(refusal) => refusal.retry_after,
            _ => None,
        };
        let error = api_error(error);
        match retry {
            Some(after) => {
                // Whole seconds, rounded up: retrying earlier would be refused again.
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                ([(header::RETRY_AFTER, HeaderValue::from(secs.max(1)))], error).into_response()
            }
            None => error.into_response(),
        }
    }
}
