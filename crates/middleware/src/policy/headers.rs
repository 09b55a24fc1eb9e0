//! Security headers on every response: [`SecurityHeaders`], configured by
//! [`SecurityHeadersConfig`] (`[middleware.security_headers]`).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::http::header::Entry;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use xcore_core::config::{Problems, Section};

/// The `[middleware.security_headers]` section. Each header is sent unless the response
/// already has it (a route can set its own policy) or its value is empty.
///
/// Following OWASP's REST security guidance, JSON responses (and responses without a
/// body type) get the headers that protect an API response: `X-Content-Type-Options`,
/// `X-Frame-Options`, `api_content_security_policy` and HSTS when enabled. Every other
/// response (HTML pages, SVG, scripts, text) is something a browser may render as a
/// document, and gets the document headers too: `content_security_policy`,
/// `Referrer-Policy`, `Cross-Origin-Opener-Policy` and `Permissions-Policy`, which only
/// govern documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeadersConfig {
    pub enabled: bool,
    /// `Content-Security-Policy` of documents. The default allows only same-origin
    /// resources, plus inline styles and `data:` images, which the embedded docs page uses.
    pub content_security_policy: String,
    /// `Content-Security-Policy` of JSON responses: nothing may load and nothing may frame
    /// them, should one be opened as a page.
    pub api_content_security_policy: String,
    /// `X-Frame-Options`.
    pub frame_options: String,
    /// `Referrer-Policy` of documents.
    pub referrer_policy: String,
    /// `Cross-Origin-Opener-Policy` of documents.
    pub cross_origin_opener_policy: String,
    /// `Permissions-Policy` of documents.
    pub permissions_policy: String,
    /// `Strict-Transport-Security` max-age in seconds; 0 (the default) sends none. Set it
    /// when the server is only reached over HTTPS: browsers then refuse plain HTTP to the
    /// host for that long.
    pub hsts_max_age_secs: u64,
}

impl Default for SecurityHeadersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            content_security_policy: "default-src 'self'; img-src 'self' data:; \
                style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; \
                form-action 'self'; frame-ancestors 'none'"
                .to_owned(),
            api_content_security_policy: "default-src 'none'; frame-ancestors 'none'".to_owned(),
            frame_options: "DENY".to_owned(),
            referrer_policy: "no-referrer".to_owned(),
            cross_origin_opener_policy: "same-origin".to_owned(),
            permissions_policy: "camera=(), microphone=(), geolocation=()".to_owned(),
            hsts_max_age_secs: 0,
        }
    }
}

/// Which responses a header goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Every,
    Api,
    Documents,
}

impl Section for SecurityHeadersConfig {
    fn validate(&self, problems: &mut Problems) {
        for (key, _, _, value) in self.values() {
            if let Err(error) = value {
                problems.add(key, error);
            }
        }
    }
}

impl SecurityHeadersConfig {
    #[allow(clippy::type_complexity)]
    fn values(
        &self,
    ) -> impl Iterator<
        Item = (&'static str, Audience, HeaderName, Result<Option<HeaderValue>, String>),
    > + '_ {
        let hsts = if self.hsts_max_age_secs > 0 {
            format!("max-age={}; includeSubDomains", self.hsts_max_age_secs)
        } else {
            String::new()
        };
        [
            ("frame_options", Audience::Every, header::X_FRAME_OPTIONS, self.frame_options.clone()),
            ("hsts_max_age_secs", Audience::Every, header::STRICT_TRANSPORT_SECURITY, hsts),
            (
                "api_content_security_policy",
                Audience::Api,
                header::CONTENT_SECURITY_POLICY,
                self.api_content_security_policy.clone(),
            ),
            (
                "content_security_policy",
                Audience::Documents,
                header::CONTENT_SECURITY_POLICY,
                self.content_security_policy.clone(),
            ),
            (
                "referrer_policy",
                Audience::Documents,
                header::REFERRER_POLICY,
                self.referrer_policy.clone(),
            ),
            (
                "cross_origin_opener_policy",
                Audience::Documents,
                HeaderName::from_static("cross-origin-opener-policy"),
                self.cross_origin_opener_policy.clone(),
            ),
            (
                "permissions_policy",
                Audience::Documents,
                HeaderName::from_static("permissions-policy"),
                self.permissions_policy.clone(),
            ),
        ]
        .into_iter()
        .map(|(key, audience, name, value)| {
            let parsed = if value.is_empty() {
                Ok(None)
            } else {
                HeaderValue::from_str(&value)
                    .map(Some)
                    .map_err(|_| format!("`{value}` is not a valid header value"))
            };
            (key, audience, name, parsed)
        })
    }
}

/// The security headers, as a tower layer or applied to a [`HeaderMap`] directly.
/// `X-Content-Type-Options: nosniff` is always among them.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    /// What JSON responses get.
    api: Arc<[(HeaderName, HeaderValue)]>,
    /// What every other response gets.
    documents: Arc<[(HeaderName, HeaderValue)]>,
}

impl SecurityHeaders {
    /// The headers `config` describes; none when it is disabled. Invalid values are left
    /// out: validate the section first.
    pub fn new(config: &SecurityHeadersConfig) -> Self {
        let (mut api, mut documents) = (Vec::new(), Vec::new());
        if config.enabled {
            let nosniff = (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            api.push(nosniff.clone());
            documents.push(nosniff);
            for (_, audience, name, value) in config.values() {
                let Ok(Some(value)) = value else { continue };
                let value = interned(value);
                if audience != Audience::Documents {
                    api.push((name.clone(), value.clone()));
                }
                if audience != Audience::Api {
                    documents.push((name, value));
                }
            }
        }
        Self { api: api.into(), documents: documents.into() }
    }

    /// Adds every header of the response's audience that `headers` does not have yet.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let set = if is_document(headers.get(header::CONTENT_TYPE)) {
            &self.documents
        } else {
            &self.api
        };
        // One growth of the map at most, rather than one as each header overflows it.
        headers.reserve(set.len());
        for (name, value) in set.iter() {
            // One hash per header: `entry` finds the slot it would insert into.
            if let Entry::Vacant(slot) = headers.entry(name) {
                slot.insert(value.clone());
            }
        }
    }

    /// Whether there is any header to add.
    pub fn is_empty(&self) -> bool {
        self.api.is_empty() && self.documents.is_empty()
    }
}

/// `value` backed by static memory, so cloning it onto every response touches no shared
/// reference count (a count bumped by every worker thread bounces between their cores).
/// Each distinct value is kept once for the life of the process.
fn interned(value: HeaderValue) -> HeaderValue {
    static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    // `from_static` takes visible ASCII only; other values stay as they are.
    let Ok(text) = value.to_str() else { return value };
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    let text = match interned.get(text) {
        Some(text) => *text,
        None => {
            let text: &'static str = Box::leak(text.into());
            interned.insert(text);
            text
        }
    };
    HeaderValue::from_static(text)
}

/// Whether a response of `content_type` may be rendered as a document: anything but JSON
/// (`application/json`, `application/<type>+json`) and bodies of no stated type.
fn is_document(content_type: Option<&HeaderValue>) -> bool {
    let Some(content_type) = content_type else { return false };
    let essence = content_type.as_bytes().split(|byte| *byte == b';').next().unwrap_or_default();
    let essence = essence.trim_ascii();
    let json = essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() >= 5
            && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
            && essence[..12.min(essence.len())].eq_ignore_ascii_case(b"application/"));
    !json
}

impl<S> tower::Layer<S> for SecurityHeaders {
    type Service = SecurityHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService { inner, headers: self.clone() }
    }
}

/// The service [`SecurityHeaders`] wraps around another.
#[derive(Debug, Clone)]
pub struct SecurityHeadersService<S> {
    inner: S,
    headers: SecurityHeaders,
}

impl<S, R> tower::Service<R> for SecurityHeadersService<S>
where
    S: tower::Service<R, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = WithHeaders<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        WithHeaders { inner: self.inner.call(request), headers: Some(self.headers.clone()) }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SecurityHeadersService`].
    #[derive(Debug)]
    pub struct WithHeaders<F> {
        #[pin]
        inner: F,
        headers: Option<SecurityHeaders>,
    }
}

impl<F, E> Future for WithHeaders<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(headers) = this.headers.take() {
            headers.apply(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}
