//! Who is calling: [`CurrentUser`] and [`OptionalUser`], read from a bearer token by the
//! request's [`Gate`].

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::Extensions;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xcore_core::http::ApiError;

use crate::guard::Permissions;

/// The authenticated caller of a request, from a valid access token.
///
/// As an extractor it answers 401 `invalid_token` when the request has no valid bearer
/// token and 401 `token_expired` when the token has expired (the client should refresh).
/// It needs a [`Gate`] in the request's extensions: the server installs one on every
/// route; elsewhere add [`Gate::layer`].
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
    /// The route uses the extractor but no [`Gate`] was installed: a wiring mistake.
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

/// Turns a bearer token into the caller it stands for. The auth crate implements it over
/// its access tokens; tests and other hosts can bring their own.
pub trait Authenticate: Send + Sync + 'static {
    /// The caller `token` stands for.
    ///
    /// # Errors
    ///
    /// [`Rejection::Invalid`], [`Rejection::Expired`] or [`Rejection::Revoked`].
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection>;
}

/// What a request consults to authenticate its caller and check permissions, with the
/// address of the connection it came from when that is known.
///
/// A request finds its gate in its extensions, where [`Gate::layer`] puts one (an `Arc`
/// clone and an extension per request), or else as the thread's current gate, which a
/// host sets while it polls the request with [`Gate::scoped`] (the xcore server does this:
/// no extension per request).
///
/// Cloning a gate touches one reference count, and the gates of different connections
/// share none: a host that clones its connection's gate for each request keeps that count
/// on the core serving the connection.
#[derive(Clone)]
pub struct Gate {
    connection: Arc<Connection>,
}

/// A gate as one connection sees it.
struct Connection {
    rules: Arc<Rules>,
    peer: Option<SocketAddr>,
}

struct Rules {
    authenticator: Box<dyn Authenticate>,
    permissions: Box<dyn Permissions>,
}

impl Gate {
    pub fn new(authenticator: impl Authenticate, permissions: impl Permissions) -> Self {
        let rules =
            Rules { authenticator: Box::new(authenticator), permissions: Box::new(permissions) };
        Self { connection: Arc::new(Connection { rules: Arc::new(rules), peer: None }) }
    }

    /// This gate for the requests of a connection from `peer`.
    #[must_use]
    pub fn with_peer(&self, peer: SocketAddr) -> Self {
        let rules = self.connection.rules.clone();
        Self { connection: Arc::new(Connection { rules, peer: Some(peer) }) }
    }

    /// The address of the connection the request came from, when the host gave it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.connection.peer
    }

    /// Runs `f` with `gate` as the thread's current gate (see [`Gate::of`]), and gives
    /// the gate back: a host calls this around each poll of a request's future, so the
    /// extractors and guards polled inside find it. Scopes nest.
    pub fn scoped<R>(gate: Option<Gate>, f: impl FnOnce() -> R) -> (R, Option<Gate>) {
        xcore_core::scope::scoped(&CURRENT, gate, f)
    }

    /// The gate of a request with these `extensions`: the one in them, or else the
    /// thread's current gate.
    pub fn of(extensions: &Extensions) -> Option<Gate> {
        extensions.get::<Gate>().cloned().or_else(|| xcore_core::scope::current(&CURRENT))
    }

    /// The caller `token` stands for.
    ///
    /// # Errors
    ///
    /// As [`Authenticate::authenticate`].
    pub fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        self.connection.rules.authenticator.authenticate(token)
    }

    /// Whether `user` holds `permission`.
    pub fn allows(&self, user: &CurrentUser, permission: &str) -> bool {
        self.connection.rules.permissions.allows(user, permission)
    }

    /// The layer putting this gate into every request's extensions.
    pub fn layer(&self) -> axum::Extension<Gate> {
        axum::Extension(self.clone())
    }

    /// The caller of the request `parts` belong to: the one a guard already authenticated,
    /// or the one its bearer token stands for.
    ///
    /// # Errors
    ///
    /// [`Rejection::Missing`] without an `Authorization` header, [`Rejection::Malformed`]
    /// for another scheme, and the authenticator's rejections.
    pub fn user_of(&self, parts: &Parts) -> Result<CurrentUser, Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let token = bearer(&parts.headers)?.ok_or(Rejection::Missing)?;
        self.authenticate(token)
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("peer", &self.connection.peer).finish_non_exhaustive()
    }
}

thread_local! {
    /// The gate of the request being polled on this thread, set by [`Gate::scoped`].
    static CURRENT: Cell<Option<Gate>> = const { Cell::new(None) };
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

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let gate = Gate::of(&parts.extensions).ok_or(Rejection::NoGate)?;
        gate.user_of(parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(user) => Ok(Some(user)),
            Err(Rejection::Missing) => Ok(None),
            Err(rejection) => Err(rejection),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OptionalUser {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        <CurrentUser as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(OptionalUser)
    }
}

/// The address of the connection a request came from, as the host gave it to the
/// request's [`Gate`] (the xcore server does for every connection) or as axum's
/// `ConnectInfo<SocketAddr>`. Behind a reverse proxy this is the proxy's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let connect_info = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>();
        connect_info
            .map(|info| info.0)
            .or_else(|| Gate::of(&parts.extensions)?.peer())
            .map(PeerAddr)
            .ok_or_else(|| {
                tracing::error!("a route extracts the peer address but the host gives none");
                ApiError::internal()
            })
    }
}
