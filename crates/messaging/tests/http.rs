//! The `/messaging` API over HTTP, built the way the server builds it: the messaging
//! module over the database module, behind a stand-in for the auth module's gate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use figment::Figment;
use figment::providers::{Format, Toml};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use xcore_core::{AppBuilder, FnPlugin, PluginMeta};
use xcore_messaging::{Decision, MessagingExt, Refusal};

/// A plugin refusing messages containing "spam" for 7 seconds, through the builder
/// extension.
static ANTISPAM: FnPlugin = FnPlugin::new(
    PluginMeta { dependencies: &["messaging"], ..PluginMeta::new("antispam") },
    |app| {
        app.messaging_hooks().before_message(0, "antispam", |outgoing, _| async move {
            if outgoing.draft.body.contains("spam") {
                let refusal = Refusal::new("rate_limited", "slow down")
                    .retry_after(std::time::Duration::from_millis(6500));
                return Ok(Decision::Refuse(refusal));
            }
            Ok(Decision::Accept(outgoing.draft))
        });
        Ok(())
    },
);

async fn app_on(database: &str) -> axum::Router {
    let toml = format!("[database]\nurl = \"{database}\"\n");
    let builder = AppBuilder::new(Figment::from(Toml::string(&toml)));
    let registry = xcore_messaging::testing::registry(&[&ANTISPAM]);
    let mut app = builder.build(&registry).unwrap();
    app.start().await.unwrap();
    app.router()
        .layer(xcore_messaging::testing::gate().layer())
        .layer(axum::Extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000)))))
}

struct Client {
    router: axum::Router,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, axum::http::HeaderMap) {
        let mut request = Request::builder().method(method).uri(uri);
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
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
    }

    async fn as_user(
        &self,
        user: i64,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, body, _) = self.call(method, uri, Some(&format!("user:{user}")), body).await;
        (status, body)
    }
}

#[tokio::test]
async fn the_api_on_sqlite() {
    check(Client { router: app_on("sqlite::memory:").await }).await;
}

#[tokio::test]
async fn the_api_on_postgres() {
    let Some(url) = xcore_db::testing::fresh_postgres_url("messaging_http").await else { return };
    check(Client { router: app_on(&url).await }).await;
}

async fn check(client: Client) {
    // Every route needs a signed-in caller.
    let (status, body, headers) = client.call("GET", "/messaging/me", None, None).await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("invalid_token")), "{body}");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");

    // The caller's messaging user is created on first use, and can be renamed.
    let (status, me) = client.as_user(1, "GET", "/messaging/me", None).await;
    assert_eq!(
        (status, &me["user"]["id"], &me["user"]["username"]),
        (200, &json!("1"), &json!("user1")),
        "{me}"
    );
    let (status, me) = client
        .as_user(
            1,
            "PUT",
            "/messaging/me",
            Some(json!({"username": "Ada", "metadata": {"lang": "fr"}})),
        )
        .await;
    assert_eq!((status, &me["user"]["username"]), (200, &json!("Ada")), "{me}");
    let (status, body) =
        client.as_user(1, "PUT", "/messaging/me", Some(json!({"username": " "}))).await;
    assert_eq!((status, &body["error"]["code"]), (422, &json!("invalid_input")), "{body}");
    for user in [2, 3] {
        assert_eq!(client.as_user(user, "GET", "/messaging/me", None).await.0, 200);
    }

    // Presence.
    let (status, presence) = client.as_user(1, "POST", "/messaging/presence", None).await;
    assert_eq!((status, &presence["online"]), (200, &json!(true)), "{presence}");
    let (_, online) = client.as_user(2, "GET", "/messaging/users/online", None).await;
    assert_eq!(online["users"], json!(["1"]));
    let (status, profile) = client.as_user(2, "GET", "/messaging/users/1", None).await;
    assert_eq!((status, &profile["presence"]["online"]), (200, &json!(true)), "{profile}");
    assert_eq!(client.as_user(2, "GET", "/messaging/users/99", None).await.0, 404);

    // A group: 1 owns it, 2 is a member, 3 is not.
    let (status, group) = client
        .as_user(1, "POST", "/messaging/groups", Some(json!({"name": "tea", "members": ["2"]})))
        .await;
    assert_eq!((status, &group["kind"]), (201, &json!("group")), "{group}");
    let id = group["id"].as_i64().unwrap();
    let messages = format!("/messaging/conversations/{id}/messages");
    let (status, sent) = client.as_user(2, "POST", &messages, Some(json!({"body": "hello"}))).await;
    assert_eq!((status, &sent["seq"], &sent["sender_id"]), (201, &json!(1), &json!("2")), "{sent}");
    // A non-member cannot tell the group exists; a member without the role is told so.
    let (status, body) = client.as_user(3, "POST", &messages, Some(json!({"body": "hi"}))).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("conversation_not_found")), "{body}");
    assert_eq!(client.as_user(3, "GET", &messages, None).await.0, 404);
    let group_uri = format!("/messaging/groups/{id}");
    let (status, body) = client.as_user(2, "PATCH", &group_uri, Some(json!({"name": "x"}))).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")), "{body}");
    let (status, body) = client
        .as_user(1, "POST", "/messaging/groups", Some(json!({"name": "x", "members": ["99"]})))
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("user_not_found")), "{body}");

    // Members and roles.
    let members_uri = format!("/messaging/groups/{id}/members");
    let (status, member) =
        client.as_user(1, "POST", &members_uri, Some(json!({"user_id": "3"}))).await;
    assert_eq!((status, &member["role"]), (201, &json!("member")), "{member}");
    let (status, _) = client.as_user(1, "POST", &members_uri, Some(json!({"user_id": "3"}))).await;
    assert_eq!(status, 409);
    let (status, member) = client
        .as_user(1, "PATCH", &format!("{members_uri}/2"), Some(json!({"role": "admin"})))
        .await;
    assert_eq!((status, &member["role"]), (200, &json!("admin")), "{member}");
    let (_, listed) = client.as_user(3, "GET", &members_uri, None).await;
    let roles: Vec<_> =
        listed["members"].as_array().unwrap().iter().map(|m| m["role"].clone()).collect();
    assert_eq!(roles, [json!("owner"), json!("admin"), json!("member")]);
    assert_eq!(
        client.as_user(1, "DELETE", &format!("{members_uri}/1"), None).await.0,
        409,
        "the last owner"
    );
    assert_eq!(client.as_user(2, "DELETE", &format!("{members_uri}/3"), None).await.0, 204);
    assert_eq!(client.as_user(3, "GET", &members_uri, None).await.0, 404);

    // History, one message, edit, delete, read markers, unread counts.
    for n in 2..=5 {
        assert_eq!(
            client.as_user(1, "POST", &messages, Some(json!({"body": format!("m{n}")}))).await.0,
            201
        );
    }
    let seqs = |page: &Value| -> Vec<i64> {
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    };
    let (_, page) = client.as_user(2, "GET", &format!("{messages}?limit=2"), None).await;
    assert_eq!(seqs(&page), [4, 5]);
    let (_, page) = client.as_user(2, "GET", &format!("{messages}?before=4&limit=2"), None).await;
    assert_eq!(seqs(&page), [2, 3]);
    let (_, page) = client.as_user(2, "GET", &format!("{messages}?after=1&before=4"), None).await;
    assert_eq!(seqs(&page), [2, 3]);
    let (status, _) = client.as_user(2, "GET", &format!("{messages}?limit=x"), None).await;
    assert_eq!(status, 400);
    let (status, edited) =
        client.as_user(2, "PATCH", &format!("{messages}/1"), Some(json!({"body": "hello!"}))).await;
    assert_eq!((status, &edited["body"]), (200, &json!("hello!")), "{edited}");
    assert!(edited["edited_at"].is_string());
    let (status, _) =
        client.as_user(3, "PATCH", &format!("{messages}/1"), Some(json!({"body": "x"}))).await;
    assert_eq!(status, 404, "3 left the group");
    let (status, _) =
        client.as_user(2, "PATCH", &format!("{messages}/2"), Some(json!({"body": "x"}))).await;
    assert_eq!(status, 200, "2 is an admin");
    let (status, deleted) = client.as_user(1, "DELETE", &format!("{messages}/3"), None).await;
    assert_eq!(
        (status, &deleted["deleted"], &deleted["body"]),
        (200, &json!(true), &json!("")),
        "{deleted}"
    );
    assert_eq!(client.as_user(1, "GET", &format!("{messages}/9"), None).await.0, 404);
    let (_, conversations) = client.as_user(2, "GET", "/messaging/conversations", None).await;
    let summary = conversations["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone();
    // 2 sent message 1; 1 sent 2..=5 and deleted 3.
    assert_eq!((&summary["unread"], &summary["role"]), (&json!(3), &json!("admin")), "{summary}");
    let read = format!("/messaging/conversations/{id}/read");
    let (status, marker) = client.as_user(2, "PUT", &read, Some(json!({"seq": 4}))).await;
    assert_eq!((status, &marker["seq"]), (200, &json!(4)));
    let (_, marker) = client.as_user(2, "PUT", &read, Some(json!({"seq": 2}))).await;
    assert_eq!(marker["seq"], 4, "markers never move back");

    // Bad input: clear 4xx, nothing stored.
    let (status, body) = client.as_user(1, "POST", &messages, Some(json!({"body": "  "}))).await;
    assert_eq!((status, &body["error"]["code"]), (422, &json!("invalid_input")), "{body}");
    let (status, _) =
        client.as_user(1, "POST", &messages, Some(json!({"body": "x", "extra": 1}))).await;
    assert_eq!(status, 422);
    // A hook's refusal reaches the sender, with when to retry.
    let (status, body, headers) =
        client.call("POST", &messages, Some("user:1"), Some(json!({"body": "spam"}))).await;
    assert_eq!((status, &body["error"]["code"]), (429, &json!("rate_limited")), "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "7");
    let (_, conversation) =
        client.as_user(1, "GET", &format!("/messaging/conversations/{id}"), None).await;
    assert_eq!(conversation["last_seq"], 5);
    for refused in [
        json!({}),
        json!({"body": "x", "attachment": null}),
        json!({"attachment": [1]}),
        json!({"body": null, "attachment": {}}),
    ] {
        let (status, body) = client.as_user(1, "POST", &messages, Some(refused.clone())).await;
        assert_eq!(status, 422, "{refused}: {body}");
    }
    // An attachment alone is a message; an integral number is an integer.
    let file = json!({"attachment": {"name": "tea.png", "type": "image/png"}});
    let (status, sent) = client.as_user(1, "POST", &messages, Some(file)).await;
    assert_eq!((status, &sent["seq"], &sent["body"]), (201, &json!(6), &json!("")), "{sent}");
    let (status, marker) = client.as_user(2, "PUT", &read, Some(json!({"seq": 5.0}))).await;
    assert_eq!((status, &marker["seq"]), (200, &json!(5)), "{marker}");
    let (status, _) = client.as_user(2, "PUT", &read, Some(json!({"seq": 5.5}))).await;
    assert_eq!(status, 422);

    // A moderator edits and deletes anywhere, and reads what it is not a member of.
    let (status, _, _) = client.call("DELETE", &format!("{messages}/1"), Some("mod:9"), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = client.call("GET", &messages, Some("mod:9"), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = client.call("GET", &messages, Some("user:9"), None).await;
    assert_eq!(status, 404);

    // Direct conversations, one per pair.
    let (status, direct) =
        client.as_user(1, "POST", "/messaging/direct", Some(json!({"user_id": "3"}))).await;
    assert_eq!((status, &direct["kind"]), (200, &json!("direct")), "{direct}");
    let (_, again) =
        client.as_user(3, "POST", "/messaging/direct", Some(json!({"user_id": "1"}))).await;
    assert_eq!(again["id"], direct["id"]);

    // Deleting the group: owners only.
    assert_eq!(client.as_user(2, "DELETE", &group_uri, None).await.0, 403);
    assert_eq!(client.as_user(1, "DELETE", &group_uri, None).await.0, 204);
    assert_eq!(client.as_user(1, "GET", &messages, None).await.0, 404);
}
