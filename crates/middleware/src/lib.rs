//! xcore's HTTP middleware, usable in any axum application, in two halves:
//!
//! - [`identity`]: who is calling and what they may do. [`CurrentUser`] and
//!   [`OptionalUser`] extract the caller from a bearer token checked by the request's
//!   [`Gate`] (which the auth module builds over its tokens); [`require`] guards a route
//!   with a permission; [`RequestContext`] carries the request id, owning plugin, peer
//!   address and gate in the request's extensions.
//! - [`policy`]: what a host applies to every request. [`RateLimit`]: GCRA rate limits by
//!   client address, user or route, from config or per route, answering 429 with
//!   `Retry-After` and `RateLimit-*` headers; [`SecurityHeaders`]:
//!   `Content-Security-Policy`, `X-Frame-Options` and the others on every response.
//!
//! Panic catching, timeouts and body limits are the server's request stack's; an axum
//! application of its own uses tower-http's layers for them.

pub mod identity;
pub mod policy;

pub use identity::{
    Authenticate, ClientIp, CurrentUser, Gate, OptionalUser, PeerAddr, Permissions, Rejection,
    RequestContext, Require, RolePermissions, forwarded_client, require,
};
pub use policy::{
    Admission, KeyBy, Quota, QuotaHeaders, RateLimit, RateLimitConfig, SecurityHeaders,
    SecurityHeadersConfig,
};

use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

/// The `[middleware]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiddlewareConfig {
    pub security_headers: SecurityHeadersConfig,
    pub rate_limit: RateLimitConfig,
}

impl Section for MiddlewareConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.nested("security_headers", &self.security_headers);
        problems.nested("rate_limit", &self.rate_limit);
    }
}

#[cfg(test)]
mod tests;
