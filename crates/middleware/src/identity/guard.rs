//! Permission guards: [`require`] on a route or a router answers 401 without a valid
//! token and 403 `forbidden` when the caller lacks the permission (as the request's
//! [`Gate`](super::Gate) decides).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use xcore_core::http::ApiError;

use super::caller::{CurrentUser, Rejection};
use super::context::RequestContext;

/// A layer letting requests through only when their caller holds `permission`: use it
/// with `Router::route_layer`, `MethodRouter::layer` or `Routes::layer`.
///
/// Without a valid token the answer is 401 (as [`CurrentUser`]'s); with one that lacks
/// the permission, 403 `forbidden`. The caller it authenticated is left in the request's
/// extensions, so a `CurrentUser` extractor behind it does not verify the token again.
pub fn require(permission: impl Into<Arc<str>>) -> Require {
    Require { permission: permission.into() }
}

/// The layer [`require`] returns.
#[derive(Debug, Clone)]
pub struct Require {
    permission: Arc<str>,
}

impl<S> tower::Layer<S> for Require {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService { inner, permission: self.permission.clone() }
    }
}

/// The service [`Require`] wraps around a route.
#[derive(Debug, Clone)]
pub struct RequireService<S> {
    inner: S,
    permission: Arc<str>,
}

impl<S> tower::Service<Request> for RequireService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match check(&parts, &self.permission) {
            Ok(user) => {
                parts.extensions.insert(user);
                Either::Right(self.inner.call(Request::from_parts(parts, body)))
            }
            Err(denial) => Either::Left(ready(Ok(deny(denial, &self.permission)))),
        }
    }
}

/// Why a guard turned a request away.
enum Denial {
    Unauthenticated(Rejection),
    Forbidden,
}

fn check(parts: &axum::http::request::Parts, permission: &str) -> Result<CurrentUser, Denial> {
    let gate = RequestContext::gate_of(&parts.extensions)
        .ok_or(Denial::Unauthenticated(Rejection::NoGate))?;
    let user = gate.user_of(parts).map_err(Denial::Unauthenticated)?;
    if gate.allows(&user, permission) { Ok(user) } else { Err(Denial::Forbidden) }
}

fn deny(denial: Denial, permission: &str) -> Response {
    match denial {
        Denial::Unauthenticated(rejection) => rejection.into_response(),
        Denial::Forbidden => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the `{permission}` permission"),
        )
        .into_response(),
    }
}
