//! xcore's HTTP middleware, usable in any axum application.
//!
//! - [`CurrentUser`] and [`OptionalUser`]: the caller, from a bearer access token checked
//!   by the request's [`Gate`] (which the auth crate builds over its tokens).
//! - [`require`]: a permission guard for a route or a router, asking a [`Permissions`]
//!   implementation ([`RolePermissions`] reads the token's role claims).
//! - [`RateLimit`]: GCRA rate limits by client address, user or route, from config or
//!   per route, answering 429 with `Retry-After` and `RateLimit-*` headers.
//! - [`SecurityHeaders`]: `Content-Security-Policy`, `X-Frame-Options` and the others on
//!   every response.
//!
//! Panic catching, timeouts and body limits are the server's request stack's; an axum
//! application of its own uses tower-http's layers for them.

pub mod guard;
pub mod headers;
pub mod rate_limit;
pub mod user;

pub use guard::{Permissions, Require, RolePermissions, require};
pub use headers::{SecurityHeaders, SecurityHeadersConfig};
pub use rate_limit::{Admission, KeyBy, Quota, QuotaHeaders, RateLimit, RateLimitConfig};
pub use user::{Authenticate, CurrentUser, Gate, OptionalUser, PeerAddr, Rejection};

use serde::{Deserialize, Serialize};

/// The `[middleware]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiddlewareConfig {
    pub security_headers: SecurityHeadersConfig,
    pub rate_limit: RateLimitConfig,
}

impl MiddlewareConfig {
    /// What is wrong with the settings: the dotted key (under `middleware`) and why.
    pub fn problems(&self) -> Vec<(String, String)> {
        let headers = self.security_headers.problems().into_iter();
        let headers = headers.map(|(key, message)| (format!("security_headers.{key}"), message));
        let limits = self.rate_limit.problems().into_iter();
        let limits = limits.map(|(key, message)| (format!("rate_limit.{key}"), message));
        headers.chain(limits).collect()
    }
}

#[cfg(test)]
mod tests;
