//! HTTP tests of the whole stack, driven through `tower::ServiceExt::oneshot`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use figment::Figment;
use figment::providers::{Format, Toml};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use xcore_core::Registry;

use crate::config::{Loaded, ServerConfig};
use crate::http::{Edge, RouteTable, Stack, router};
use crate::{build_app, metrics};

mod document;

#[test]
fn the_exact_set_is_registered() {
    assert_eq!(
        Registry::linked().names(),
        [
            "advanced_logging",
            "auth",
            "cache",
            "database",
            "hello",
            "message_rate_limiter",
            "messaging",
            "moderation",
            "quotas",
            "welcome"
        ]
    );
}

/// A test secret and two-factor key, so the auth module writes no file.
const SECRET: &str = "a test secret of at least thirty-two bytes";
const OTP_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The configuration `toml` over a database at `database_url` and the test keys, with the
/// message log in the system's temporary directory rather than the source tree.
fn loaded(toml: &str, database_url: &str) -> Loaded {
    let log = std::env::temp_dir().join(format!("xcore-server-tests-{}.log", std::process::id()));
    let toml = format!(
        "[database]\nurl = \"{database_url}\"\nacquire_timeout_secs = 2\n\
         [auth]\nsecret = \"{SECRET}\"\notp_secret_key = \"{OTP_KEY}\"\n\
         [plugins.advanced_logging]\nfile = \"{}\"\n{toml}",
        log.display()
    );
    Loaded::from_figment(Figment::from(Toml::string(&toml)), None).unwrap()
}

/// The full application, built and started the way the server does it (the database
/// module's startup hook applies the migrations), behind the edge of a connection.
async fn app_with(toml: &str, database_url: &str) -> Edge {
    let loaded = loaded(toml, database_url);
    // Installed first, as the server does: modules bind their metric handles when built.
    let metrics = metrics::handle();
    let mut app = build_app(&loaded, false).unwrap();
    app.start().await.unwrap();
    let edge = router(&mut app, &loaded.config, metrics, Arc::new(AtomicBool::new(false)));
    // As the server serves every connection: with its peer's address.
    edge.for_peer(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)))
}

fn stack(server: &ServerConfig) -> Stack {
    Stack::new(server, &xcore_middleware::MiddlewareConfig::default(), None)
}

async fn app(toml: &str) -> Edge {
    app_with(toml, "sqlite::memory:").await
}

async fn send(app: &Edge, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

async fn get_json(app: &Edge, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_answers_ok() {
    assert_eq!(
        get_json(&app("").await, "/health").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn ready_reports_the_cache() {
    let (status, body) = get_json(&app("").await, "/ready").await;
    assert_eq!((status, &body["checks"]["cache"]), (StatusCode::OK, &json!("ok (memory)")));
    // An unreachable Redis degrades the server; it stays ready.
    let unreachable = "[cache]\nbackend = \"tiered\"\nurl = \"redis://127.0.0.1:1\"";
    let (status, body) = get_json(&app(unreachable).await, "/ready").await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("degraded")), "{body}");
    let cache = body["checks"]["cache"].as_str().unwrap();
    assert!(cache.starts_with("degraded: ") && cache.ends_with("(tiered)"), "{cache}");
    match std::env::var("XCORE_TEST_REDIS_URL") {
        Ok(url) => {
            let reachable = format!("[cache]\nbackend = \"redis\"\nurl = \"{url}\"");
            let (status, body) = get_json(&app(&reachable).await, "/ready").await;
            assert_eq!((status, &body["checks"]["cache"]), (StatusCode::OK, &json!("ok (redis)")));
        }
        Err(_) => eprintln!(
            "ready_reports_the_cache: Redis case skipped: XCORE_TEST_REDIS_URL is not set"
        ),
    }
}

#[tokio::test]
async fn ready_reflects_the_database() {
    let (status, body) = get_json(&app("").await, "/ready").await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ready")));

    // Not started: its startup hook could not reach the database either.
    let loaded = loaded("", "postgres://nobody@127.0.0.1:1/gone");
    let mut unreachable = build_app(&loaded, false).unwrap();
    let draining = Arc::new(AtomicBool::new(false));
    let gone = router(&mut unreachable, &loaded.config, metrics::handle(), draining);
    let (status, body) = get_json(&gone, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("database unavailable"),
        "{body}"
    );
    assert!(body["error"]["request_id"].is_string(), "{body}");
}

#[tokio::test]
async fn hello_answers_its_configured_greeting() {
    let (status, body) = get_json(&app("").await, "/plugins/hello/").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Hello from xcore!"})));
    let configured = app("[plugins.hello]\ngreeting = \"Bonjour\"").await;
    assert_eq!(get_json(&configured, "/plugins/hello/").await.1, json!({"message": "Bonjour"}));
}

#[tokio::test]
async fn errors_have_the_standard_body_and_echo_the_request_id() {
    let app = app("").await;
    let request = Request::get("/no/such/route")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-request-id"], "abc-123");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "code": "not_found", "message": "no route for GET /no/such/route", "request_id": "abc-123"
        }})
    );

    let (status, headers, body) =
        send(&app, Request::delete("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(body["error"]["request_id"].as_str(), headers["x-request-id"].to_str().ok());

    let (status, _, body) = send(
        &app,
        Request::post("/auth/register")
            .header("content-type", "application/json")
            .body(Body::from("{\"email\": 1}"))
            .unwrap(),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("unprocessable_entity"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("invalid type"), "{body}");
}

#[tokio::test]
async fn docs_page_is_served_from_the_binary() {
    let app = app("").await;
    let (status, _, body) = send(&app, Request::get("/docs/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("swagger-ui"));
    let (status, headers, body) =
        send(&app, Request::get("/docs/swagger-ui-bundle.js").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert!(body.len() > 100_000, "the bundle is embedded, {} bytes", body.len());
}

fn counter(metrics: &str, route: &str) -> u64 {
    let prefix = format!("http_requests_total{{method=\"GET\",route=\"{route}\",status=\"200\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = app("").await;
    let scrape = |app: Edge| async move {
        let (_, _, body) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        String::from_utf8(body).unwrap()
    };
    let before = counter(&scrape(app.clone()).await, "/plugins/hello/");
    get_json(&app, "/plugins/hello/").await;
    get_json(&app, "/plugins/hello/").await;
    let after = scrape(app.clone()).await;
    assert_eq!(counter(&after, "/plugins/hello/"), before + 2);
    assert!(after.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/plugins/hello/\",status=\"200\",le=\"0.005\"}"), "{after}");
    assert!(after.contains("xcore_build_info{version=\""), "{after}");
    assert!(after.contains("db_pool_connections{state=\"open\"} 1"), "{after}");
}

/// Every route the router serves is labelled by its own template, and every template in
/// the edge's route table is one the router serves.
#[tokio::test]
async fn every_route_is_labelled_by_its_template() {
    let app = app("").await;
    let (_, doc) = get_json(&app, "/openapi.json").await;
    let mut templates: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    templates.extend(
        ["/docs", "/docs/", "/docs/{*rest}", "/openapi.json", "/plugins/hello"].map(String::from),
    );
    for template in &templates {
        // A path that matches the template: `{id}` and `{*rest}` become `1`.
        let mut path = String::new();
        for segment in template.split_inclusive('/') {
            let parameter = if segment.ends_with('/') { "1/" } else { "1" };
            path.push_str(if segment.starts_with('{') { parameter } else { segment });
        }
        // The router serves it too: only its fallback names the concrete path.
        let (_, _, body) = send(&app, Request::get(&path).body(Body::empty()).unwrap()).await;
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains(&format!("no route for GET {path}\"")), "{template}: {body}");
    }
    let (_, _, body) = send(&app, Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    assert!(String::from_utf8_lossy(&body).contains("no route for GET /nowhere\""));
    let (_, _, metrics) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let metrics = String::from_utf8(metrics).unwrap();
    let labelled = |route: &str| metrics.contains(&format!("route=\"{route}\",status="));
    for template in &templates {
        assert!(labelled(template), "{template} is not labelled: {metrics}");
    }
    assert!(labelled("unmatched"), "{metrics}");
    assert!(templates.iter().any(|template| template.starts_with("/auth/")), "{templates:?}");
}

#[tokio::test]
async fn a_panicking_handler_gives_500_and_the_next_request_succeeds() {
    let app = stack(&ServerConfig::default()).edge(
        axum::Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("kaboom")
                    }
                }),
            )
            .route("/fine", get(|| async { "fine" })),
        RouteTable::default(),
    );
    let (status, _, body) = send(&app, Request::get("/boom").body(Body::empty()).unwrap()).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "internal_error");
    assert!(body["error"]["request_id"].is_string());
    assert!(!body.to_string().contains("kaboom"), "internals leak: {body}");
    let (status, _, body) = send(&app, Request::get("/fine").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"fine".as_slice()));
}

#[tokio::test]
async fn body_limit_and_timeout_answer_with_the_standard_body() {
    let config =
        ServerConfig { body_limit_bytes: 16, request_timeout_secs: 1, ..ServerConfig::default() };
    let app = stack(&config).edge(
        axum::Router::new()
            .route("/echo", axum::routing::post(|body: String| async move { body }))
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(std::time::Duration::from_secs(5)).await }),
            ),
        RouteTable::default(),
    );
    let (status, _, _) =
        send(&app, Request::post("/echo").body(Body::from("short")).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(
        &app,
        Request::post("/echo")
            .header("content-length", "40")
            .body(Body::from("x".repeat(40)))
            .unwrap(),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("payload_too_large"))
    );
    assert!(body["error"]["request_id"].is_string(), "{body}");
    let (status, _, body) = send(&app, Request::get("/slow").body(Body::empty()).unwrap()).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::REQUEST_TIMEOUT, &json!("request_timeout"))
    );
}

#[tokio::test]
async fn cors_follows_the_config() {
    let config = ServerConfig {
        cors: crate::config::CorsConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let app = stack(&config)
        .edge(axum::Router::new().route("/x", get(|| async { "x" })), RouteTable::default());
    let preflight = |origin: &'static str| {
        Request::options("/x")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .unwrap()
    };
    let (_, headers, _) = send(&app, preflight("https://app.example.com")).await;
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    let (_, headers, _) = send(&app, preflight("https://evil.example.com")).await;
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn guestbook_round_trip_on_sqlite_and_postgres() {
    guestbook_round_trip(app("").await).await;
    if let Some(url) = xcore_db::testing::fresh_postgres_url("server_guestbook").await {
        guestbook_round_trip(app_with("", &url).await).await;
    }
}

/// Registers and signs in `email` through the stack: the access token.
async fn sign_in(app: &Edge, email: &str) -> String {
    let post = |uri: &str, body: &Value| {
        Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let credentials = json!({"email": email, "password": "correct horse"});
    let (status, _, _) = send(app, post("/auth/register", &credentials)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = send(app, post("/auth/login", &credentials)).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn guestbook_round_trip(app: Edge) {
    let token = sign_in(&app, "ada@example.com").await;
    let sign_as = |token: Option<&str>, name: &str| {
        let mut request =
            Request::post("/plugins/hello/guestbook").header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::from(json!({"name": name, "message": "was here"}).to_string())).unwrap()
    };
    let sign = |name: &str| sign_as(Some(&token), name);
    let names = |body: Value| -> Vec<String> {
        let entries = body["entries"].as_array().unwrap().iter();
        entries.map(|e| e["name"].as_str().unwrap().to_owned()).collect()
    };
    let (status, _, _) = send(&app, sign_as(None, "Anonymous")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(&app, sign("Ada")).await;
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let entry: Value = serde_json::from_slice(&body).unwrap();
    assert!(entry["author_id"].as_i64().is_some_and(|id| id > 0), "{entry}");
    // Listed twice: the second answer comes from the cache, which signing must clear.
    for _ in 0..2 {
        let (status, body) = get_json(&app, "/plugins/hello/guestbook?limit=10").await;
        assert_eq!((status, names(body)), (StatusCode::OK, vec!["Ada".to_owned()]));
    }
    let (status, _, _) = send(&app, sign("Grace")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = send(&app, sign("   ")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get_json(&app, "/plugins/hello/guestbook?limit=10").await;
    assert_eq!((status, names(body)), (StatusCode::OK, vec!["Grace".to_owned(), "Ada".to_owned()]));
    let (_, _, metrics) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("cache_hits_total{backend=\"memory\"}"), "{metrics}");
}

#[tokio::test]
async fn accounts_work_through_the_whole_stack() {
    let app = app("").await;
    let post = |uri: &str, body: Value| {
        Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let credentials = json!({"email": "ada@example.com", "password": "correct horse"});
    let (status, _, _) = send(&app, post("/auth/register", credentials.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = send(&app, post("/auth/login", credentials)).await;
    assert_eq!(status, StatusCode::OK);
    let token: Value = serde_json::from_slice(&body).unwrap();
    let me = |token: &str| {
        Request::get("/auth/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&app, me(token["access_token"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, headers, body) = send(&app, me("forged")).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_token"))
    );
    assert!(body["error"]["request_id"].is_string(), "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer error=\"invalid_token\"");
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = app("").await;
    for uri in ["/health", "/nowhere", "/plugins/hello/", "/auth/me", "/docs/"] {
        let (_, headers, _) = send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(headers["x-content-type-options"], "nosniff", "{uri}");
        assert_eq!(headers["x-frame-options"], "DENY", "{uri}");
        assert!(headers.contains_key("content-security-policy"), "{uri}");
    }
    // JSON answers get the API policy; the docs page, a document, the document headers.
    let (_, headers, _) = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    assert!(!headers.contains_key("referrer-policy"));
    let (_, headers, _) = send(&app, Request::get("/docs/").body(Body::empty()).unwrap()).await;
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    // The docs page loads its scripts from files, which the default policy allows.
    let (_, _, page) = send(&app, Request::get("/docs/").body(Body::empty()).unwrap()).await;
    let page = String::from_utf8(page).unwrap();
    assert!(!page.contains("<script>"), "an inline script would be blocked: {page}");
    let off = app_with("[middleware.security_headers]\nenabled = false", "sqlite::memory:").await;
    let (_, headers, _) = send(&off, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert!(!headers.contains_key("x-frame-options"));
}

/// Regression (issue "Every module through the plugin door"): the edge gives each request
/// its context, so `CurrentUser` works in a handler whose future another task runs.
#[tokio::test]
async fn current_user_works_behind_buffer_and_spawned_handlers() {
    struct Tokens;
    impl xcore_middleware::Authenticate for Tokens {
        fn authenticate(
            &self,
            token: &str,
        ) -> Result<xcore_middleware::CurrentUser, xcore_middleware::Rejection> {
            let user_id = token.parse().map_err(|_| xcore_middleware::Rejection::Invalid)?;
            Ok(xcore_middleware::CurrentUser { user_id, session_id: "s".into(), roles: vec![] })
        }
    }
    let gate = xcore_middleware::Gate::new(Tokens, xcore_middleware::RolePermissions::default());
    let stack = Stack::new(
        &ServerConfig::default(),
        &xcore_middleware::MiddlewareConfig::default(),
        Some(gate),
    );
    let me = get(|user: xcore_middleware::CurrentUser| async move { user.user_id.to_string() });
    let spawned = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::spawn(next.run(request)).await.unwrap()
        },
    );
    let buffered = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(|_| async {
            StatusCode::SERVICE_UNAVAILABLE
        }))
        .layer(tower::buffer::BufferLayer::new(8));
    let router = axum::Router::new()
        .route("/buffered", me.clone().layer(buffered))
        .route("/spawned", me.layer(spawned));
    let edge = stack.edge(router, RouteTable::default());
    for uri in ["/buffered", "/spawned"] {
        let request =
            Request::get(uri).header("authorization", "Bearer 42").body(Body::empty()).unwrap();
        let (status, _, body) = send(&edge, request).await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, b"42".as_slice()), "{uri}");
    }
}

fn build_problems(toml: &str) -> Vec<String> {
    match build_app(&loaded(toml, "sqlite::memory:"), true) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn modules_check_their_own_sections_and_dependencies() {
    let problems = build_problems("[cache]\ntimeout_ms = 0\n[logg]\nlevel = \"info\"");
    assert_eq!(
        problems,
        [
            "config: `logg`: unknown section `logg`; expected one of: auth, cache, database, log, \
             messaging, middleware, plugins, server (from TOML source string)",
            "plugin `cache`: invalid config: `cache.timeout_ms`: must be at least 1 (from TOML source string)",
        ]
    );
    let problems = build_problems("[plugins]\ndisabled = [\"cache\"]");
    assert_eq!(
        problems,
        ["plugin `hello` depends on `cache`, which is disabled in `plugins.disabled`"]
    );
}

#[test]
fn production_refuses_to_build_without_a_signing_secret() {
    let figment = Figment::from(Toml::string("[server]\nenvironment = \"prod\""));
    let loaded = Loaded::from_figment(figment, None).unwrap();
    let error = build_app(&loaded, false).unwrap_err().to_string();
    assert!(error.contains("plugin `auth`: invalid config: `auth.secret`: production"), "{error}");
}

/// Hardening, point 10: production needs the key that encrypts two-factor secrets, the key
/// is checked, and `xcore config show` never prints it.
#[test]
fn production_needs_a_two_factor_key_that_config_show_hides() {
    let build = |auth: &str| {
        let toml = format!(
            "[server]\nenvironment = \"prod\"\n[database]\nurl = \"sqlite::memory:\"\n\
             [auth]\nsecret = \"{SECRET}\"\n{auth}"
        );
        let loaded = Loaded::from_figment(Figment::from(Toml::string(&toml)), None).unwrap();
        build_app(&loaded, false).map(|app| (loaded, app))
    };
    let error = build("").unwrap_err().to_string();
    assert!(
        error.contains("`auth.otp_secret_key`: production")
            && error.contains("openssl rand -hex 32"),
        "{error}"
    );
    let error = build("otp_secret_key = \"0123\"").unwrap_err().to_string();
    assert!(error.contains("`auth.otp_secret_key`: must be 64 hexadecimal"), "{error}");

    let key = "ab".repeat(32);
    let (loaded, app) = build(&format!("otp_secret_key = \"{key}\"")).unwrap();
    let shown = crate::config::show(&loaded.config, &app.sections).unwrap();
    assert!(shown.contains("otp_secret_key = \"***\"") && !shown.contains(&key), "{shown}");
}
