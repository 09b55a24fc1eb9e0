//! The moderators' API through the application's router, as the server mounts it: the
//! permission guard, every route, bad input, and the document.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::http::MAX_MINUTES;

const BASE: &str = "/plugins/moderation";

struct Client {
    router: axum::Router,
}

impl Client {
    /// The application over `database`; the server's edge gives every request its gate,
    /// its peer address and the error body, here layers do.
    async fn on(database: &str) -> (Self, App) {
        let app = app_on(database, "").await.unwrap();
        let router = app
            .router()
            .layer(axum::middleware::from_fn(xcore_core::http::error_bodies))
            .layer(xcore_messaging::testing::gate().layer())
            .layer(axum::Extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000)))));
        (Self { router }, app)
    }

    /// Calls `method uri` with `token` and a JSON `body`; answers the status and the body
    /// (`null` when empty).
    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(format!("{BASE}{uri}"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn moderator(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        self.call(Some("mod:9"), method, uri, body).await
    }
}

#[tokio::test]
async fn the_api_on_sqlite() {
    let (client, app) = Client::on("sqlite::memory:").await;
    check(&client, &app).await;
}

#[tokio::test]
async fn the_api_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("moderation_http").await else {
        return;
    };
    let (client, app) = Client::on(&url).await;
    check(&client, &app).await;
}

async fn check(client: &Client, app: &App) {
    let engine = engine(app);
    let lobby = users(&engine, &["1", "2"]).await;
    let sent = engine.send("2", lobby, "rude").await.unwrap();
    let delete = format!("/messages/{lobby}/{}", sent.seq);

    // Every route: 401 without a token, 403 without the permission, and nothing done.
    let mute = json!({"user": "1"});
    let routes: [(&str, &str, Option<Value>); 8] = [
        ("POST", "/mutes", Some(mute.clone())),
        ("GET", "/mutes", None),
        ("DELETE", "/mutes/1", None),
        ("POST", "/bans", Some(mute.clone())),
        ("GET", "/bans", None),
        ("DELETE", "/bans/1", None),
        ("DELETE", &delete, None),
        ("GET", "/actions", None),
    ];
    for (method, uri, body) in &routes {
        let (status, answer) = client.call(None, method, uri, body.clone()).await;
        assert_eq!((status, &answer["error"]["code"]), (401, &json!("invalid_token")), "{uri}");
        let (status, answer) = client.call(Some("user:1"), method, uri, body.clone()).await;
        assert_eq!((status, &answer["error"]["code"]), (403, &json!("forbidden")), "{uri}");
    }
    assert!(!engine.message(&Actor::user("2"), lobby, sent.seq).await.unwrap().deleted);
    assert!(recorded(&moderation(app), 0).await.is_empty());

    // Mutes: an integral number is an integer; the muted user's messages are refused.
    let (status, muted) = client
        .moderator("POST", "/mutes", Some(json!({"user": "1", "minutes": 30.0, "reason": "flood"})))
        .await;
    assert_eq!((status, &muted["user"], &muted["by"]), (201, &json!("1"), &json!("9")), "{muted}");
    assert!(muted["until"].is_string(), "{muted}");
    assert_eq!(refusal(engine.send("1", lobby, "hi").await).code, "muted");
    let (status, listed) = client.moderator("GET", "/mutes", None).await;
    assert_eq!((status, &listed["sanctions"]), (200, &json!([muted])));
    assert_eq!(
        client.moderator("DELETE", "/mutes/1?reason=calmer", None).await,
        (204, Value::Null)
    );
    let (status, again) = client.moderator("DELETE", "/mutes/1", None).await;
    assert_eq!((status, &again["error"]["code"]), (404, &json!("not_muted")), "{again}");
    engine.send("1", lobby, "back").await.unwrap();

    // Bans.
    let (status, banned) = client.moderator("POST", "/bans", Some(json!({"user": "1"}))).await;
    assert_eq!((status, &banned["kind"], &banned["until"]), (201, &json!("ban"), &Value::Null));
    assert_eq!(refusal(engine.send("1", lobby, "hi").await).code, "banned");
    let (_, listed) = client.moderator("GET", "/bans", None).await;
    assert_eq!(listed["sanctions"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(client.moderator("DELETE", "/bans/1", None).await.0, 204);
    let (status, again) = client.moderator("DELETE", "/bans/1", None).await;
    assert_eq!((status, &again["error"]["code"]), (404, &json!("not_banned")), "{again}");

    // Deleting any message.
    let (status, deleted) =
        client.moderator("DELETE", &format!("{delete}?reason=rude"), None).await;
    assert_eq!((status, &deleted["deleted"], &deleted["body"]), (200, &json!(true), &json!("")));

    // The record, newest first, a page at a time, by user.
    let (status, page) = client.moderator("GET", "/actions?limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    let actions = |page: &Value| -> Vec<(String, String)> {
        page["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["action"].as_str().unwrap().into(), a["user"].as_str().unwrap().into()))
            .collect()
    };
    let pair = |action: &str, user: &str| (action.to_owned(), user.to_owned());
    assert_eq!(actions(&page), [pair("delete", "2"), pair("unban", "1")]);
    assert_eq!(page["actions"][0]["reason"], "rude");
    assert_eq!(page["actions"][0]["seq"], sent.seq);
    let next = page["next"].as_i64().unwrap();
    let (_, rest) = client.moderator("GET", &format!("/actions?before={next}"), None).await;
    assert_eq!(actions(&rest), [pair("ban", "1"), pair("unmute", "1"), pair("mute", "1")]);
    assert_eq!((&rest["next"], &rest["actions"][1]["reason"]), (&Value::Null, &json!("calmer")));
    let (_, bob) = client.moderator("GET", "/actions?user=2", None).await;
    assert_eq!(actions(&bob), [pair("delete", "2")]);

    bad_input(client, app, lobby).await;
}

/// Bad input: a clear 4xx error in the error body's shape, and nothing done.
async fn bad_input(client: &Client, app: &App, lobby: ConversationId) {
    let before = recorded(&moderation(app), 0).await;
    let long = "x".repeat(129);
    let reason = "r".repeat(501);
    let body = |value: Value| Some(value);
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("POST", "/mutes".into(), body(json!({})), 422),
        ("POST", "/mutes".into(), body(json!({"user": null})), 422),
        ("POST", "/mutes".into(), body(json!({"user": 1})), 422),
        ("POST", "/mutes".into(), body(json!({"user": ""})), 422),
        ("POST", "/mutes".into(), body(json!({"user": " \t"})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "a\u{7}"})), 422),
        ("POST", "/mutes".into(), body(json!({"user": long})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": 0})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": -5})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": 1.5})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": null})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": "5"})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": 52_560_001})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "minutes": 1e300})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "reason": null})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "reason": reason})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "1", "extra": 1})), 422),
        ("POST", "/mutes".into(), body(json!({"user": "99"})), 404),
        ("POST", "/bans".into(), body(json!({"user": "1", "reason": 5})), 422),
        ("POST", "/bans".into(), body(json!({"user": "1", "minutes": 5})), 422),
        ("POST", "/bans".into(), body(json!({"user": "99"})), 404),
        ("POST", "/bans".into(), body(json!([1])), 422),
        ("DELETE", format!("/mutes/1?reason={reason}"), None, 400),
        ("DELETE", "/mutes/%20".into(), None, 400),
        ("DELETE", format!("/bans/{long}"), None, 400),
        ("DELETE", format!("/messages/{lobby}/99"), None, 404),
        ("DELETE", "/messages/999/1".into(), None, 404),
        ("DELETE", "/messages/x/1".into(), None, 400),
        ("DELETE", format!("/messages/{lobby}/1?reason={reason}"), None, 400),
        ("GET", "/actions?limit=0".into(), None, 400),
        ("GET", "/actions?limit=201".into(), None, 400),
        ("GET", "/actions?limit=x".into(), None, 400),
        ("GET", "/actions?before=0".into(), None, 400),
        ("GET", "/actions?user=".into(), None, 400),
        ("GET", "/actions?before=99999999999999999999".into(), None, 400),
    ];
    for (method, uri, body, expected) in cases {
        let (status, answer) = client.moderator(method, &uri, body.clone()).await;
        assert_eq!(status, expected, "{method} {uri} {body:?}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{method} {uri} {body:?}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let moderation = moderation(app);
    assert_eq!(recorded(&moderation, 0).await, before, "nothing was recorded");
    assert!(moderation.sanctions(SanctionKind::Mute).await.unwrap().is_empty());
    assert!(moderation.sanctions(SanctionKind::Ban).await.unwrap().is_empty());
    assert!(!engine(app).message(&Actor::user("1"), lobby, 2).await.unwrap().deleted);
}

/// The document states what the handlers check, and what the guard answers.
#[tokio::test]
async fn the_document_describes_every_route_exactly() {
    let app = app_on("sqlite::memory:", "").await.unwrap();
    let doc = serde_json::to_value(&app.openapi).unwrap();
    let operations = [
        ("/mutes", "post"),
        ("/mutes", "get"),
        ("/mutes/{user}", "delete"),
        ("/bans", "post"),
        ("/bans", "get"),
        ("/bans/{user}", "delete"),
        ("/messages/{conversation}/{seq}", "delete"),
        ("/actions", "get"),
    ];
    for (path, method) in operations {
        let operation = &doc["paths"][format!("{BASE}{path}")][method];
        assert_eq!(operation["security"], json!([{"bearer": []}]), "{path} {method}");
        assert!(operation["responses"]["403"].is_object(), "{path} {method}: {operation}");
    }
    let schemas = &doc["components"]["schemas"];
    let mute = &schemas["NewMute"];
    assert_eq!(mute["required"], json!(["user"]), "{mute}");
    assert_eq!(mute["additionalProperties"], json!(false), "{mute}");
    let user = &mute["properties"]["user"];
    assert_eq!(
        (&user["type"], &user["minLength"], &user["maxLength"]),
        (&json!("string"), &json!(1), &json!(128))
    );
    assert!(user["pattern"].is_string(), "{user}");
    let minutes = &mute["properties"]["minutes"];
    assert_eq!(
        (&minutes["type"], &minutes["minimum"]),
        (&json!("integer"), &json!(1)),
        "{minutes}"
    );
    assert_eq!(minutes["maximum"], MAX_MINUTES, "{minutes}");
    for schema in ["NewMute", "NewBan"] {
        let reason = &schemas[schema]["properties"]["reason"];
        assert_eq!(
            (&reason["type"], &reason["maxLength"]),
            (&json!("string"), &json!(500)),
            "{reason}"
        );
    }
    let parameters = doc["paths"][format!("{BASE}/actions")]["get"]["parameters"].clone();
    let find = |name: &str| {
        parameters.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone()
    };
    assert!(find("user")["pattern"].is_string(), "{parameters}");
    assert_eq!((&find("limit")["minimum"], &find("limit")["maximum"]), (&json!(1), &json!(200)));
    assert_eq!(find("before")["minimum"], 1);
    let path_user = &doc["paths"][format!("{BASE}/mutes/{{user}}")]["delete"]["parameters"][0];
    assert_eq!(path_user["schema"]["maxLength"], 128, "{path_user}");
}
