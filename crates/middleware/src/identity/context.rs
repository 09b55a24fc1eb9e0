//! [`RequestContext`]: what the host knows of a request before any handler runs, carried
//! in the request's extensions, and the extractors that read it ([`CurrentUser`],
//! [`OptionalUser`], [`PeerAddr`], [`ClientIp`], the context itself).
//!
//! One value inserted once per request rather than several extensions, and nothing kept
//! in thread-locals: a tower layer may move the request's future to another task
//! (`tower::buffer`, a spawned task) and the request must still know its caller there.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use xcore_core::http::ApiError;

use super::caller::{CurrentUser, OptionalUser, Rejection};
use super::gate::Gate;

/// What the host knows of a request: its id, the plugin whose route it is for, the peer
/// address of its connection and the gate that authenticates its caller.
///
/// The xcore server inserts one into every request's extensions before routing. As an
/// extractor it answers 500 when the host gave none.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id, also in the `x-request-id` header of the request and response.
    pub request_id: HeaderValue,
    /// The plugin owning the route, `None` for the host's routes and unmatched paths.
    pub plugin: Option<&'static str>,
    /// The address of the connection the request came from; behind a reverse proxy, the
    /// proxy's.
    pub peer: Option<SocketAddr>,
    /// The client's address: the peer's, or behind a reverse proxy the one the proxy
    /// reports (`middleware.rate_limit.client_ip_header`, see [`forwarded_client`]).
    pub client: Option<IpAddr>,
    /// What authenticates the caller; `None` when no auth module is enabled.
    pub gate: Option<Gate>,
}

impl RequestContext {
    /// The context of a request with these `extensions`.
    pub fn of(extensions: &Extensions) -> Option<&RequestContext> {
        extensions.get()
    }

    /// The gate of a request: its context's, or one [`Gate::layer`] put there.
    pub fn gate_of(extensions: &Extensions) -> Option<&Gate> {
        Self::of(extensions).and_then(|context| context.gate.as_ref()).or_else(|| extensions.get())
    }

    /// The client address of a request: its context's, or the peer's from axum's
    /// `ConnectInfo`.
    pub fn client_of(extensions: &Extensions) -> Option<IpAddr> {
        match Self::of(extensions) {
            Some(context) => context.client,
            None => extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()),
        }
    }

    /// The peer address of a request: its context's, or axum's `ConnectInfo`.
    pub fn peer_of(extensions: &Extensions) -> Option<SocketAddr> {
        Self::of(extensions)
            .and_then(|context| context.peer)
            .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::of(&parts.extensions).cloned().ok_or_else(|| {
            tracing::error!("a route extracts the request context but the host gives none");
            ApiError::internal()
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let gate = RequestContext::gate_of(&parts.extensions).ok_or(Rejection::NoGate)?;
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

/// The address of the connection a request came from, from its [`RequestContext`] (the
/// xcore server gives every request one) or axum's `ConnectInfo<SocketAddr>`. Behind a
/// reverse proxy this is the proxy's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        RequestContext::peer_of(&parts.extensions).map(PeerAddr).ok_or_else(|| {
            tracing::error!("a route extracts the peer address but the host gives none");
            ApiError::internal()
        })
    }
}

/// The address of the client a request came from: the connection's peer, or behind a
/// reverse proxy the address the proxy reports in the configured header. What limits and
/// lockouts per client count by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        RequestContext::client_of(&parts.extensions).map(ClientIp).ok_or_else(|| {
            tracing::error!("a route extracts the client address but the host gives none");
            ApiError::internal()
        })
    }
}

/// The last address of header `name` (such as `x-forwarded-for`): the one the nearest
/// proxy appended, so a client cannot choose it by sending the header itself.
pub fn forwarded_client(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let last = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    last.rsplit(',').next()?.trim().parse().ok()
}
