//! Who is calling: [`CurrentUser`] and [`OptionalUser`], why a request has none
//! ([`Rejection`]), and where the token is ([`bearer`]). Extracting them from a request is
//! `context`'s, which finds the request's `Gate`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xcore_core::http::ApiError;

/// The authenticated caller of a request, from a valid access token.
///
/// As an extractor it answers 401 `invalid_token` when the request has no valid bearer
/// token and 401 `token_expired` when the token has expired (the client should refresh).
/// It needs a [`Gate`](crate::Gate) in the request's
/// [`RequestContext`](crate::RequestContext): the xcore server gives every request one;
/// elsewhere add [`Gate::layer`](crate::Gate::layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// The account's id.
    pub user_id: i64,
    /// The session the token belongs to.
    pub session_id: String,
    /// The roles the token carries.
    pub roles: Vec<String>,
}

impl CurrentUser {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

/// The caller if the request carries a bearer token, `None` if it carries none.
///
/// A token that is present but invalid or expired is still refused with 401: a client
/// sending a bad token should hear about it rather than be served as anonymous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalUser(pub Option<CurrentUser>);

/// Why a request has no [`CurrentUser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("this endpoint needs a bearer access token")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("the access token is not valid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the session of this access token has ended")]
    Revoked,
    /// The route uses the extractor but no [`Gate`](crate::Gate) was installed: a wiring
    /// mistake.
    #[error("authentication is not configured on this route")]
    NoGate,
}

impl Rejection {
    /// The error code answered: `token_expired` for an expired token, `invalid_token`
    /// otherwise.
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "token_expired",
            Self::NoGate => "internal_error",
            _ => "invalid_token",
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        if self == Self::NoGate {
            tracing::error!("a route extracts the current user but no Gate is installed");
            return ApiError::internal().into_response();
        }
        // RFC 6750: a 401 names the scheme and, for a bad token, the error.
        let challenge = match self {
            Self::Missing => HeaderValue::from_static("Bearer"),
            Self::Expired => HeaderValue::from_static(
                "Bearer error=\"invalid_token\", error_description=\"token expired\"",
            ),
            _ => HeaderValue::from_static("Bearer error=\"invalid_token\""),
        };
        let error = ApiError::new(StatusCode::UNAUTHORIZED, self.code(), self.to_string());
        ([(header::WWW_AUTHENTICATE, challenge)], error).into_response()
    }
}

/// The bearer token of `headers`, `None` when there is no `Authorization` header.
///
/// # Errors
///
/// [`Rejection::Malformed`] for several `Authorization` headers, another scheme, or an
/// empty token.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(Rejection::Malformed);
    }
    let value = value.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Rejection::Malformed);
    }
    Ok(Some(token))
}
