//! Rate limiting with the generic cell rate algorithm (GCRA), keyed by client address, by
//! user or by route, answering 429 with `Retry-After` and the `RateLimit-*` headers.
//!
//! GCRA keeps one instant per key, the theoretical arrival time (TAT) of the next request
//! if requests came at exactly the allowed rate. A request at `now` is allowed when the
//! TAT, moved one emission interval on, is within the burst tolerance of `now`; the TAT
//! then moves on. It allows `burst` requests at once and then `requests` per `per_secs`,
//! smoothly, with no window edges to game. Keys live in a bounded moka cache and vanish
//! once idle longer than the tolerance, when their state equals a fresh key's anyway.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use moka::ops::compute::Op;
use serde::{Deserialize, Serialize};
use xcore_core::http::ApiError;

use xcore_core::config::{Problems, Section};

use crate::identity::{RequestContext, bearer, forwarded_client};

fn enabled() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_enabled(enabled: &bool) -> bool {
    *enabled
}

/// What requests are counted together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyBy {
    /// The client's address.
    #[default]
    Ip,
    /// The authenticated user; anonymous requests count by address.
    User,
    /// Every client together: a budget for the route.
    Route,
}

/// A rate: `burst` requests at once, then `requests` every `per_secs` seconds. A quota
/// with `enabled = false` limits nothing: how a configuration turns off a default quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Whether the quota applies (default `true`).
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub requests: u32,
    #[serde(default)]
    pub per_secs: u64,
    /// Requests allowed at once; `requests` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default)]
    pub key: KeyBy,
}

impl Quota {
    /// `requests` every `per_secs` seconds, by client address, with a burst of `requests`.
    pub const fn per(requests: u32, per_secs: u64) -> Self {
        Self { enabled: true, requests, per_secs, burst: None, key: KeyBy::Ip }
    }

    /// No limit: a quota that turns off the one it replaces.
    pub const fn off() -> Self {
        Self { enabled: false, ..Self::per(0, 0) }
    }

    /// The same quota counted by `key`.
    #[must_use]
    pub const fn by(mut self, key: KeyBy) -> Self {
        self.key = key;
        self
    }

    /// The same quota with `burst` requests allowed at once.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests)
    }

    /// What is wrong with the quota's values, if anything: for a config section that
    /// holds a quota to report from its [`Section::validate`].
    pub fn problem(&self) -> Option<&'static str> {
        if !self.enabled {
            None
        } else if self.requests == 0 {
            Some("`requests` must be at least 1")
        } else if self.per_secs == 0 {
            Some("`per_secs` must be at least 1")
        } else if self.burst == Some(0) {
            Some("`burst` must be at least 1")
        } else {
            None
        }
    }
}

/// The `[middleware.rate_limit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether `default` applies to every route without a quota of its own in `routes`.
    pub enabled: bool,
    /// The quota of every route when `enabled`.
    pub default: Quota,
    /// Quotas by route template (`"/auth/login"`, `"/plugins/blog/posts/{id}"`), applied
    /// whether or not `enabled` is set. By default the credential-guessing routes of
    /// `/auth` are limited by client address; routes given here are laid over those
    /// defaults, and a default is turned off with `enabled = false`.
    #[serde(deserialize_with = "over_default_routes")]
    pub routes: BTreeMap<String, Quota>,
    /// Behind a reverse proxy, the header it puts the client's address in (such as
    /// `x-forwarded-for`; its last address is used, the one the proxy appended). Leave
    /// unset when clients connect directly: they could write the header themselves.
    pub client_ip_header: Option<String>,
    /// Keys tracked per quota at most; the least recently seen go first.
    pub max_keys: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default: Quota::per(100, 1).with_burst(200),
            routes: BTreeMap::from([
                ("/auth/login".to_owned(), Quota::per(10, 60)),
                ("/auth/register".to_owned(), Quota::per(10, 3600)),
                ("/auth/password/reset/request".to_owned(), Quota::per(5, 3600)),
                ("/auth/password/reset/confirm".to_owned(), Quota::per(10, 3600)),
                ("/auth/refresh".to_owned(), Quota::per(60, 60)),
            ]),
            client_ip_header: None,
            max_keys: 100_000,
        }
    }
}

/// The routes a configuration gives, laid over the default routes: a configuration that
/// sets one quota keeps the others.
fn over_default_routes<'de, D>(deserializer: D) -> Result<BTreeMap<String, Quota>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let given = BTreeMap::<String, Quota>::deserialize(deserializer)?;
    let mut routes = RateLimitConfig::default().routes;
    routes.extend(given);
    Ok(routes)
}

impl RateLimitConfig {
    /// `client_ip_header` as a header name, when it is set and valid.
    pub fn client_ip_header_name(&self) -> Option<HeaderName> {
        let name = self.client_ip_header.as_deref()?;
        HeaderName::from_bytes(name.as_bytes()).ok()
    }
}

impl Section for RateLimitConfig {
    fn validate(&self, problems: &mut Problems) {
        if let Some(problem) = self.default.problem() {
            problems.add("default", problem);
        }
        for (route, quota) in &self.routes {
            let key = format!("routes.\"{route}\"");
            if !route.starts_with('/') {
                problems.add(key.clone(), "a route starts with `/`");
            }
            if let Some(problem) = quota.problem() {
                problems.add(key, problem);
            }
        }
        if let Some(name) = &self.client_ip_header
            && HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            problems.add("client_ip_header", format!("`{name}` is not a header name"));
        }
        problems.check(self.max_keys > 0, "max_keys", "must be at least 1");
    }
}

/// The outcome of one request against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Requests that could still be made at once.
        remaining: u32,
        /// Seconds until the full burst is available again.
        reset_secs: u64,
    },
    Limited {
        /// Seconds until one request will be allowed.
        retry_after_secs: u64,
        reset_secs: u64,
    },
}

/// What a quota counts by, for one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Ip(IpAddr),
    User(i64),
    Route,
}

/// One quota's state: the TAT of every key.
#[derive(Debug, Clone)]
pub struct Limiter {
    quota: Quota,
    /// Nanoseconds between two requests at the allowed rate.
    emission: u64,
    /// Nanoseconds of burst: `burst` emission intervals.
    tolerance: u64,
    tats: moka::sync::Cache<Key, u64>,
    origin: Instant,
}

impl Limiter {
    /// A limiter for `quota` tracking at most `max_keys` keys.
    pub fn new(quota: Quota, max_keys: u64) -> Self {
        let period = Duration::from_secs(quota.per_secs.max(1));
        let emission = u64::try_from(period.as_nanos() / u128::from(quota.requests.max(1)))
            .unwrap_or(u64::MAX)
            .max(1);
        let tolerance = emission.saturating_mul(u64::from(quota.burst().max(1)));
        let tats = moka::sync::Cache::builder()
            .max_capacity(max_keys)
            .time_to_idle(Duration::from_nanos(tolerance) + Duration::from_secs(1))
            .build();
        Self { quota, emission, tolerance, tats, origin: Instant::now() }
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Counts a request for `key` now.
    pub fn check(&self, key: Key) -> Decision {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(key, now)
    }

    /// Counts a request for `key` at `now` nanoseconds after the limiter was made.
    pub fn check_at(&self, key: Key, now: u64) -> Decision {
        let mut decision = None;
        self.tats.entry(key).and_compute_with(|entry| {
            let tat = entry.map_or(now, |entry| *entry.value()).max(now);
            let next = tat.saturating_add(self.emission);
            let allowed_from = next.saturating_sub(self.tolerance);
            if now < allowed_from {
                decision = Some(Decision::Limited {
                    retry_after_secs: secs_ceil(allowed_from - now),
                    reset_secs: secs_ceil(tat - now),
                });
                Op::Nop
            } else {
                let room = self.tolerance - (next - now);
                decision = Some(Decision::Allowed {
                    remaining: u32::try_from(room / self.emission).unwrap_or(u32::MAX),
                    reset_secs: secs_ceil(next - now),
                });
                Op::Put(next)
            }
        });
        decision.unwrap_or(Decision::Allowed { remaining: 0, reset_secs: 0 })
    }
}

fn secs_ceil(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

/// The rate-limiting layer: a default quota and quotas by route template, or a single
/// quota for whatever it wraps ([`RateLimit::single`], for a plugin's own routes).
#[derive(Debug, Clone)]
pub struct RateLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    default: Option<Limiter>,
    /// Quotas by route template; `None` where a route's quota is turned off.
    routes: BTreeMap<String, Option<Limiter>>,
    client_ip_header: Option<HeaderName>,
}

impl RateLimit {
    /// The limits `config` describes; `None` when there are none.
    pub fn from_config(config: &RateLimitConfig) -> Option<Self> {
        let limiter = |quota: &Quota| Limiter::new(*quota, config.max_keys);
        let default = (config.enabled && config.default.enabled).then(|| limiter(&config.default));
        let routes: BTreeMap<_, _> = config
            .routes
            .iter()
            .map(|(route, quota)| (route.clone(), quota.enabled.then(|| limiter(quota))))
            .collect();
        if default.is_none() && routes.values().all(Option::is_none) {
            return None;
        }
        let client_ip_header = config.client_ip_header_name();
        Some(Self { inner: Arc::new(Inner { default, routes, client_ip_header }) })
    }

    /// One quota for every request through the layer: put it on a plugin's routes for a
    /// limit of their own.
    pub fn single(quota: Quota) -> Self {
        let default =
            quota.enabled.then(|| Limiter::new(quota, RateLimitConfig::default().max_keys));
        Self { inner: Arc::new(Inner { default, routes: BTreeMap::new(), client_ip_header: None }) }
    }

    /// Whether any quota applies to requests for route template `route` (`None`: a request
    /// no route matched). A host that knows its routes can ask once per route instead of
    /// on every request.
    pub fn applies_to(&self, route: Option<&str>) -> bool {
        self.limiter(route).is_some()
    }

    fn limiter(&self, route: Option<&str>) -> Option<&Limiter> {
        match route.and_then(|route| self.inner.routes.get(route)) {
            Some(quota) => quota.as_ref(),
            None => self.inner.default.as_ref(),
        }
    }

    /// Counts `request`, made to route template `route`, against the quota that applies to
    /// it. The client's address comes from the configured proxy header or the request's
    /// peer address (see [`RequestContext::peer_of`]); a user's id, from the request's token
    /// through its gate (see [`RequestContext::gate_of`]).
    pub fn admit(&self, route: Option<&str>, request: &Request) -> Admission {
        let Some((limiter, key)) = self.classify(route, request) else {
            return Admission::Unlimited;
        };
        let burst = u64::from(limiter.quota.burst());
        let per_secs = limiter.quota.per_secs;
        match limiter.check(key) {
            Decision::Allowed { remaining, reset_secs } => Admission::Allowed(QuotaHeaders([
                burst,
                u64::from(remaining),
                reset_secs,
                per_secs,
            ])),
            Decision::Limited { retry_after_secs, reset_secs } => {
                let error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    format!("rate limit exceeded: retry in {retry_after_secs} s"),
                );
                let mut response = error.into_response();
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                QuotaHeaders([burst, 0, reset_secs, per_secs]).apply(headers);
                Admission::Limited(response)
            }
        }
    }

    /// The quota applying to `request` and the key it counts under; `None` when no quota
    /// applies or the client cannot be told apart.
    fn classify(&self, route: Option<&str>, request: &Request) -> Option<(&Limiter, Key)> {
        let limiter = self.limiter(route)?;
        let key = match limiter.quota.key {
            KeyBy::Route => Key::Route,
            KeyBy::User => match user_of(request) {
                Some(user) => Key::User(user),
                None => Key::Ip(self.client_ip(request)?),
            },
            KeyBy::Ip => Key::Ip(self.client_ip(request)?),
        };
        Some((limiter, key))
    }

    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        let address = match &self.inner.client_ip_header {
            Some(name) => forwarded_client(request.headers(), name),
            None => RequestContext::peer_of(request.extensions()).map(|peer| peer.ip()),
        };
        if address.is_none() {
            tracing::debug!("rate limit: the client's address is unknown; request not counted");
        }
        address
    }
}

/// The authenticated user of `request`, if its token is valid.
fn user_of(request: &Request) -> Option<i64> {
    let gate = RequestContext::gate_of(request.extensions())?;
    let token = bearer(request.headers()).ok()??;
    gate.authenticate(token).ok().map(|user| user.user_id)
}

impl<S> tower::Layer<S> for RateLimit {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService { inner, limits: self.clone() }
    }
}

/// The service [`RateLimit`] wraps around another.
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limits: RateLimit,
}

/// What [`RateLimit::admit`] decided for a request.
#[derive(Debug)]
pub enum Admission {
    /// No quota applies, or the client could not be told apart.
    Unlimited,
    /// Within the quota: the response should carry these headers.
    Allowed(QuotaHeaders),
    /// Over the quota: answer with this 429.
    Limited(Response),
}

/// The `RateLimit-*` headers of an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaHeaders([u64; 4]);

impl QuotaHeaders {
    /// `RateLimit-Limit`, `-Remaining`, `-Reset` (draft-ietf-httpapi-ratelimit-headers) and
    /// `RateLimit-Policy`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
        static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
        static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
        static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
        let [limit, remaining, reset, window] = self.0;
        headers.insert(LIMIT.clone(), HeaderValue::from(limit));
        headers.insert(REMAINING.clone(), HeaderValue::from(remaining));
        headers.insert(RESET.clone(), HeaderValue::from(reset));
        if let Ok(policy) = HeaderValue::from_str(&format!("{limit};w={window}")) {
            headers.insert(POLICY.clone(), policy);
        }
    }
}

type Refused = std::future::Ready<Result<Response, Infallible>>;

impl<S> tower::Service<Request> for RateLimitService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Refused, Either<S::Future, WithQuota<S::Future>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
        match self.limits.admit(route, &request) {
            Admission::Unlimited => Either::Right(Either::Left(self.inner.call(request))),
            Admission::Allowed(headers) => {
                Either::Right(Either::Right(WithQuota { inner: self.inner.call(request), headers }))
            }
            Admission::Limited(response) => Either::Left(std::future::ready(Ok(response))),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an allowed request: the response gets the quota headers.
    #[derive(Debug)]
    pub struct WithQuota<F> {
        #[pin]
        inner: F,
        headers: QuotaHeaders,
    }
}

impl<F> Future for WithQuota<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        this.headers.apply(response.headers_mut());
        Poll::Ready(Ok(response))
    }
}
