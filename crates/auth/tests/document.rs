//! What the `/auth` OpenAPI document states, and the 503 of an unreachable database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use xcore_auth::AuthConfig;
use xcore_db::{Database, DatabaseConfig};

use support::*;

/// The document states the flows as links and the body checks as schema keywords.
#[tokio::test]
async fn the_document_links_the_flows_and_states_the_constraints() {
    let h = harness("sqlite::memory:", AuthConfig::default()).await;
    let (_, _, doc) = xcore_auth::http::router(h.auth.clone()).mount("/auth");
    let doc = serde_json::to_value(&doc).unwrap();
    let links = |path: &str, method: &str, status: &str| {
        let links = &doc["paths"][path][method]["responses"][status]["links"];
        let mut names: Vec<String> = links.as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(links("/auth/register", "post", "201"), ["login"]);
    assert_eq!(links("/auth/login", "post", "200"), ["logout", "refresh"]);
    assert_eq!(links("/auth/sessions", "get", "200"), ["end_session"]);
    let login = &doc["paths"]["/auth/login"]["post"]["responses"]["200"]["links"]["refresh"];
    assert_eq!(login["operationId"], "refresh");
    assert_eq!(login["requestBody"]["refresh_token"], "$response.body#/refresh_token");
    let register = &doc["components"]["schemas"]["RegisterRequest"]["properties"];
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 128);
    assert_eq!(register["email"]["maxLength"], 254);
    assert!(register["email"]["pattern"].as_str().unwrap().starts_with("^[^@"));
    assert_eq!(doc["components"]["schemas"]["RegisterRequest"]["additionalProperties"], false);
}

/// A database that cannot be reached answers 503 (try again), not 500, and says so in the
/// document.
#[tokio::test]
async fn an_unreachable_database_answers_503() {
    let config = DatabaseConfig {
        url: "postgres://postgres@127.0.0.1:1/none".to_owned(),
        acquire_timeout_secs: 1,
        ..Default::default()
    };
    let h = node(Database::new(&config).unwrap(), AuthConfig::default());
    let answer = h.register("ada@example.com", "correct horse battery").await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
    );
    let answer = h.login("ada@example.com", "correct horse battery").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    let (_, _, doc) = xcore_auth::http::router(h.auth.clone()).mount("/auth");
    let doc = serde_json::to_value(&doc).unwrap();
    assert!(doc["paths"]["/auth/login"]["post"]["responses"]["503"].is_object());
}
