use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

/// Tokens of the form `user:<id>:<role>,<role>`; `expired` and `revoked` are refused as
/// such, anything else as invalid.
struct FakeTokens;

impl Authenticate for FakeTokens {
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        match token {
            "expired" => Err(Rejection::Expired),
            "revoked" => Err(Rejection::Revoked),
            _ => {
                let rest = token.strip_prefix("user:").ok_or(Rejection::Invalid)?;
                let (id, roles) = rest.split_once(':').unwrap_or((rest, ""));
                Ok(CurrentUser {
                    user_id: id.parse().map_err(|_| Rejection::Invalid)?,
                    session_id: "s1".to_owned(),
                    roles: roles.split(',').filter(|r| !r.is_empty()).map(String::from).collect(),
                })
            }
        }
    }
}

fn app() -> Router {
    let gate = Gate::new(FakeTokens, RolePermissions::default());
    Router::new()
        .route("/me", get(|user: CurrentUser| async move { user.user_id.to_string() }))
        .route(
            "/maybe",
            get(|OptionalUser(user): OptionalUser| async move {
                user.map_or("anonymous".to_owned(), |user| user.user_id.to_string())
            }),
        )
        .route(
            "/read",
            get(|user: CurrentUser| async move { format!("read by {}", user.user_id) })
                .layer(require("plugins.read")),
        )
        .nest(
            "/admin",
            Router::new()
                .route("/stats", get(|| async { "stats" }))
                .route_layer(require("admin.stats")),
        )
        .layer(gate.layer())
        .layer(SecurityHeaders::new(&SecurityHeadersConfig::default()))
}

async fn call(
    app: Router,
    uri: &str,
    authorization: Option<&str>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut request = Request::builder().uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), headers)
}

fn code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn current_user_needs_a_valid_bearer_token() {
    let (status, body, _) = call(app(), "/me", Some("Bearer user:7")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "7"));
    // The scheme is case-insensitive (RFC 7235).
    assert_eq!(call(app(), "/me", Some("bearer user:7")).await.0, StatusCode::OK);

    for (authorization, expected) in [
        (None, "invalid_token"),
        (Some("Bearer nonsense"), "invalid_token"),
        (Some("Basic dXNlcjpwYXNz"), "invalid_token"),
        (Some("Bearer "), "invalid_token"),
        (Some("Bearer revoked"), "invalid_token"),
        (Some("Bearer expired"), "token_expired"),
    ] {
        let (status, body, headers) = call(app(), "/me", authorization).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(code(&body), expected, "{authorization:?}");
        assert!(
            headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"),
            "{authorization:?}"
        );
    }
}

#[tokio::test]
async fn optional_user_is_none_without_a_token_and_refuses_a_bad_one() {
    assert_eq!(call(app(), "/maybe", None).await.1, "anonymous");
    assert_eq!(call(app(), "/maybe", Some("Bearer user:3")).await.1, "3");
    let (status, body, _) = call(app(), "/maybe", Some("Bearer expired")).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "token_expired"));
}

#[tokio::test]
async fn the_guard_answers_401_then_403_then_lets_through() {
    let (status, body, _) = call(app(), "/read", None).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let (status, body, _) = call(app(), "/read", Some("Bearer user:1:editor")).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body, _) = call(app(), "/read", Some("Bearer user:1:plugins.read")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "read by 1"));
    // `admin` is granted `*`, on a guarded router as on a route.
    assert_eq!(call(app(), "/read", Some("Bearer user:2:admin")).await.0, StatusCode::OK);
    assert_eq!(call(app(), "/admin/stats", Some("Bearer user:2:admin")).await.0, StatusCode::OK);
    let (status, _, _) = call(app(), "/admin/stats", Some("Bearer user:1:plugins.read")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn without_a_gate_the_extractor_fails_closed() {
    let app = Router::new()
        .route("/me", get(|user: CurrentUser| async move { user.user_id.to_string() }));
    let (status, body, _) = call(app, "/me", Some("Bearer user:7")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
    );
}

#[test]
fn permission_patterns() {
    assert!(identity::matches("*", "anything.at.all"));
    assert!(identity::matches("plugins.*", "plugins.read"));
    assert!(!identity::matches("plugins.*", "pluginsx.read"));
    assert!(!identity::matches("plugins.*", "admin.read"));
    assert!(identity::matches("plugins.read", "plugins.read"));
    assert!(!identity::matches("plugins.read", "plugins.write"));
    assert!(!identity::matches("plug*", "plugins.read"));
}

#[tokio::test]
async fn security_headers_are_added_unless_the_route_set_its_own() {
    let app = app()
        .route("/framed", get(|| async { ([(header::X_FRAME_OPTIONS, "SAMEORIGIN")], "framed") }));
    let (_, _, headers) = call(app.clone(), "/maybe", None).await;
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'self'")
    );
    assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY), "HSTS is opt-in");
    // Error responses get them too.
    let (_, _, headers) = call(app.clone(), "/me", None).await;
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let (_, _, headers) = call(app, "/framed", None).await;
    assert_eq!(headers[header::X_FRAME_OPTIONS], "SAMEORIGIN");
}

#[test]
fn json_gets_the_api_headers_and_everything_else_the_document_headers() {
    let headers = SecurityHeaders::new(&SecurityHeadersConfig::default());
    let applied = |content_type: Option<&str>| {
        let mut map = axum::http::HeaderMap::new();
        if let Some(content_type) = content_type {
            map.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        }
        headers.apply(&mut map);
        map
    };
    for api in [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/Problem+JSON"),
    ] {
        let map = applied(api);
        assert_eq!(
            map[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'",
            "{api:?}"
        );
        assert_eq!(map[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{api:?}");
        assert_eq!(map[header::X_FRAME_OPTIONS], "DENY", "{api:?}");
        assert!(!map.contains_key(header::REFERRER_POLICY), "{api:?}");
        assert!(!map.contains_key("permissions-policy"), "{api:?}");
    }
    for document in ["text/html; charset=utf-8", "image/svg+xml", "text/plain", "text/json+html"] {
        let map = applied(Some(document));
        let policy = map[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{document}: {policy}");
        assert_eq!(map[header::REFERRER_POLICY], "no-referrer", "{document}");
        assert_eq!(map["cross-origin-opener-policy"], "same-origin", "{document}");
        assert!(map.contains_key("permissions-policy"), "{document}");
        assert_eq!(map[header::X_FRAME_OPTIONS], "DENY", "{document}");
        assert_eq!(map[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{document}");
    }
}

fn context(peer: std::net::SocketAddr) -> RequestContext {
    RequestContext {
        request_id: axum::http::HeaderValue::from_static("req-1"),
        plugin: Some("test"),
        peer: Some(peer),
        client: Some(peer.ip()),
        gate: Some(Gate::new(FakeTokens, RolePermissions::default())),
    }
}

async fn text(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn extractors_read_the_request_context() {
    let peer = std::net::SocketAddr::from(([192, 0, 2, 7], 5000));
    let app: Router = Router::new()
        .route("/peer", get(|PeerAddr(peer): PeerAddr| async move { peer.to_string() }))
        .route("/me", get(|user: CurrentUser| async move { user.user_id.to_string() }))
        .route(
            "/context",
            get(|context: RequestContext| async move {
                format!("{:?} {:?}", context.request_id, context.plugin)
            }),
        );
    let request = |uri: &str, context: Option<RequestContext>| {
        let mut request = Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer user:9")
            .body(Body::empty())
            .unwrap();
        if let Some(context) = context {
            request.extensions_mut().insert(context);
        }
        request
    };
    assert_eq!(
        text(&app, request("/peer", Some(context(peer)))).await,
        (StatusCode::OK, "192.0.2.7:5000".to_owned())
    );
    assert_eq!(text(&app, request("/me", Some(context(peer)))).await, (StatusCode::OK, "9".into()));
    assert_eq!(
        text(&app, request("/context", Some(context(peer)))).await,
        (StatusCode::OK, "\"req-1\" Some(\"test\")".into())
    );
    // Without a context (and no `Gate::layer`), there is nothing to read: fail closed.
    for uri in ["/peer", "/me", "/context"] {
        assert_eq!(text(&app, request(uri, None)).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    }
}

/// Regression (issue "Every module through the plugin door"): the caller travels with the
/// request, so a layer that moves the handler's future to another task keeps it.
#[tokio::test]
async fn current_user_survives_buffered_and_spawned_handlers() {
    let peer = std::net::SocketAddr::from(([192, 0, 2, 7], 5000));
    let me = get(|user: CurrentUser| async move { user.user_id.to_string() });
    let spawned = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::spawn(next.run(request)).await.unwrap()
        },
    );
    let app: Router = Router::new()
        .route(
            "/buffered",
            me.clone().layer(
                tower::ServiceBuilder::new()
                    .layer(axum::error_handling::HandleErrorLayer::new(|_| async {
                        StatusCode::SERVICE_UNAVAILABLE
                    }))
                    .layer(tower::buffer::BufferLayer::new(8)),
            ),
        )
        .route("/spawned", me.layer(spawned));
    for uri in ["/buffered", "/spawned"] {
        let mut request = Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer user:9")
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(context(peer));
        assert_eq!(text(&app, request).await, (StatusCode::OK, "9".to_owned()), "{uri}");
    }
}

#[test]
fn invalid_header_values_are_reported_by_key() {
    let config = SecurityHeadersConfig { frame_options: "DENY\n".to_owned(), ..Default::default() };
    let problems = xcore_core::config::problems(&config);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "frame_options");
    let hsts = SecurityHeadersConfig { hsts_max_age_secs: 60, ..Default::default() };
    let mut headers = axum::http::HeaderMap::new();
    SecurityHeaders::new(&hsts).apply(&mut headers);
    assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], "max-age=60; includeSubDomains");
    let off = SecurityHeadersConfig { enabled: false, ..Default::default() };
    assert!(SecurityHeaders::new(&off).is_empty());
}

mod rate_limits {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;

    use super::*;
    use crate::policy::rate_limit::{Decision, Key, Limiter, Quota};

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        // 2 per second, bursts of 4.
        let limiter = Limiter::new(Quota::per(2, 1).with_burst(4), 100);
        let key = || Key::Ip([10, 0, 0, 1].into());
        let allowed = |d: Decision| matches!(d, Decision::Allowed { .. });
        for expected in [3, 2, 1, 0] {
            assert!(
                matches!(limiter.check_at(key(), SEC), Decision::Allowed { remaining, .. } if remaining == expected)
            );
        }
        assert_eq!(
            limiter.check_at(key(), SEC),
            Decision::Limited { retry_after_secs: 1, reset_secs: 2 }
        );
        // Another key has its own budget.
        assert!(allowed(limiter.check_at(Key::Ip([10, 0, 0, 2].into()), SEC)));
        // Half a second later one more request fits, not two.
        assert!(allowed(limiter.check_at(key(), SEC + SEC / 2)));
        assert!(!allowed(limiter.check_at(key(), SEC + SEC / 2)));
        // After two idle seconds the whole burst is back.
        for _ in 0..4 {
            assert!(allowed(limiter.check_at(key(), 4 * SEC)));
        }
        assert!(!allowed(limiter.check_at(key(), 4 * SEC)));
    }

    fn limited_app(quota: Quota) -> Router {
        let gate = Gate::new(FakeTokens, RolePermissions::default());
        Router::new()
            .route("/limited", get(|| async { "ok" }))
            .route_layer(RateLimit::single(quota))
            .route("/free", get(|| async { "free" }))
            .layer(gate.layer())
            .layer(axum::Extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000)))))
    }

    #[tokio::test]
    async fn over_the_limit_answers_429_with_retry_after_then_recovers() {
        let app = limited_app(Quota::per(1, 1));
        let (status, _, headers) = call(app.clone(), "/limited", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["ratelimit-limit"], "1");
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert_eq!(headers["ratelimit-policy"], "1;w=1");
        let (status, body, headers) = call(app.clone(), "/limited", None).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
        );
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(headers["ratelimit-remaining"], "0");
        // Other routes are not limited by it.
        assert_eq!(call(app.clone(), "/free", None).await.0, StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
        assert_eq!(call(app, "/limited", None).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn by_user_each_user_has_a_budget_and_anonymous_callers_count_by_address() {
        let app = limited_app(Quota::per(1, 60).by(KeyBy::User));
        assert_eq!(call(app.clone(), "/limited", Some("Bearer user:1")).await.0, StatusCode::OK);
        assert_eq!(
            call(app.clone(), "/limited", Some("Bearer user:1")).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(call(app.clone(), "/limited", Some("Bearer user:2")).await.0, StatusCode::OK);
        assert_eq!(call(app.clone(), "/limited", None).await.0, StatusCode::OK);
        assert_eq!(call(app, "/limited", None).await.0, StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn config_quotas_apply_by_route_template_and_read_the_proxy_header() {
        let config = RateLimitConfig {
            routes: [("/items/{id}".to_owned(), Quota::per(1, 60))].into(),
            client_ip_header: Some("x-forwarded-for".to_owned()),
            ..RateLimitConfig::default()
        };
        assert!(xcore_core::config::problems(&config).is_empty());
        let app = Router::new()
            .route("/items/{id}", get(|| async { "item" }))
            .route("/other", get(|| async { "other" }))
            .layer(RateLimit::from_config(&config).unwrap());
        let from = |client: &str, uri: &str| {
            let request = Request::builder()
                .uri(uri)
                .header("x-forwarded-for", format!("203.0.113.9, {client}"))
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request)
        };
        // One template, one budget per client, whatever the id.
        assert_eq!(from("198.51.100.1", "/items/1").await.unwrap().status(), StatusCode::OK);
        assert_eq!(
            from("198.51.100.1", "/items/2").await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(from("198.51.100.2", "/items/1").await.unwrap().status(), StatusCode::OK);
        assert_eq!(from("198.51.100.1", "/other").await.unwrap().status(), StatusCode::OK);
    }

    /// A default quota is turned off with `enabled = false` in the configuration: that
    /// route is then not limited at all (not even by `default`), and the other default
    /// quotas stay, as they do under an empty `routes` table.
    #[tokio::test]
    async fn a_quota_turned_off_limits_nothing() {
        let toml = r#"
            enabled = true
            default = { requests = 1, per_secs = 60 }
            [routes."/auth/login"]
            enabled = false
        "#;
        let figment = figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(toml),
        );
        let config: RateLimitConfig = figment.extract().unwrap();
        assert!(xcore_core::config::problems(&config).is_empty());
        assert!(!config.routes["/auth/login"].enabled);
        assert!(config.routes["/auth/register"].enabled, "the other defaults stay");
        let limits = RateLimit::from_config(&config).unwrap();
        assert!(!limits.applies_to(Some("/auth/login")));
        assert!(limits.applies_to(Some("/auth/register")));
        assert!(limits.applies_to(Some("/anything")), "the default still applies elsewhere");
        let empty: RateLimitConfig = figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string("routes = {}"),
        )
        .extract()
        .unwrap();
        assert_eq!(empty.routes, RateLimitConfig::default().routes);
        let app = Router::new().route("/auth/login", get(|| async { "in" })).layer(limits).layer(
            axum::Extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [192, 0, 2, 1],
                1,
            )))),
        );
        for _ in 0..5 {
            let request = Request::builder().uri("/auth/login").body(Body::empty()).unwrap();
            assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);
        }
    }

    #[test]
    fn bad_quotas_are_reported_by_key() {
        let mut config = RateLimitConfig::default();
        config.routes.insert("/x".to_owned(), Quota::per(0, 1));
        config.routes.insert("nope".to_owned(), Quota::per(1, 1));
        config.default = Quota::per(1, 0);
        config.client_ip_header = Some("bad header".to_owned());
        let keys: Vec<String> =
            xcore_core::config::problems(&config).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["default", "routes.\"/x\"", "routes.\"nope\"", "client_ip_header"]);
    }
}
