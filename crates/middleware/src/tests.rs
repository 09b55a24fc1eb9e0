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
    assert!(guard::matches("*", "anything.at.all"));
    assert!(guard::matches("plugins.*", "plugins.read"));
    assert!(!guard::matches("plugins.*", "pluginsx.read"));
    assert!(!guard::matches("plugins.*", "admin.read"));
    assert!(guard::matches("plugins.read", "plugins.read"));
    assert!(!guard::matches("plugins.read", "plugins.write"));
    assert!(!guard::matches("plug*", "plugins.read"));
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
fn invalid_header_values_are_reported_by_key() {
    let config = SecurityHeadersConfig { frame_options: "DENY\n".to_owned(), ..Default::default() };
    let problems = config.problems();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "frame_options");
    let hsts = SecurityHeadersConfig { hsts_max_age_secs: 60, ..Default::default() };
    let mut headers = axum::http::HeaderMap::new();
    SecurityHeaders::new(&hsts).apply(&mut headers);
    assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], "max-age=60; includeSubDomains");
    let off = SecurityHeadersConfig { enabled: false, ..Default::default() };
    assert!(SecurityHeaders::new(&off).is_empty());
}
