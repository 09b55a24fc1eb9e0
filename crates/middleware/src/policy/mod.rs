//! HTTP policies a host applies to every request, whoever handles it: rate limits and
//! security headers, each configured by its own table of `[middleware]`.

pub mod headers;
pub mod rate_limit;

pub use headers::{SecurityHeaders, SecurityHeadersConfig};
pub use rate_limit::{Admission, KeyBy, Quota, QuotaHeaders, RateLimit, RateLimitConfig};
