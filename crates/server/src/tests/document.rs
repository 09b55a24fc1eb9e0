//! The OpenAPI document and the contract it states: what it lists, request bodies that
//! must be objects, timestamps in RFC 3339.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::{app, get_json, send};

#[tokio::test]
async fn openapi_lists_enabled_plugins_only() {
    let (_, doc) = get_json(&app("").await, "/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = |doc: &Value| -> Vec<String> {
        let keys = doc["paths"].as_object().unwrap().keys();
        let modules = ["/auth/", "/messaging/", "/plugins/moderation/"];
        keys.filter(|path| !modules.iter().any(|module| path.starts_with(module)))
            .cloned()
            .collect()
    };
    assert_eq!(
        paths(&doc),
        [
            "/health",
            "/metrics",
            "/plugins/hello/",
            "/plugins/hello/guestbook",
            "/ready",
            "/socket.io/",
            "/ws"
        ]
    );
    assert!(doc["paths"]["/auth/login"]["post"].is_object(), "the auth module's routes");
    assert!(doc["paths"]["/messaging/groups"]["post"].is_object(), "the messaging module's");
    assert!(doc["paths"]["/plugins/moderation/mutes"]["post"].is_object(), "moderation's");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let disabled = "[plugins]\ndisabled = [\"hello\", \"moderation\"]";
    let (_, doc) = get_json(&app(disabled).await, "/openapi.json").await;
    assert_eq!(paths(&doc), ["/health", "/metrics", "/ready", "/socket.io/", "/ws"]);
    assert!(doc["paths"]["/plugins/moderation/mutes"].is_null());
    let disabled = app("[plugins]\ndisabled = [\"hello\"]").await;
    assert_eq!(get_json(&disabled, "/plugins/hello/").await.0, StatusCode::NOT_FOUND);
}

/// A JSON body that is not an object gets 422 with the standard error body, on every
/// route (serde would read a struct from an array), and changes nothing.
#[tokio::test]
async fn json_bodies_must_be_objects_on_every_route() {
    let app = app("").await;
    let json = |method: &str, uri: &str, token: Option<&str>, body: &str| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json; charset=utf-8");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::from(body.to_owned())).unwrap()
    };
    let credentials = r#"{"email": "ada@example.com", "password": "correct horse"}"#;
    let (status, _, _) = send(&app, json("POST", "/auth/register", None, credentials)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, body) = send(&app, json("POST", "/auth/login", None, credentials)).await;
    let token: Value = serde_json::from_slice(&body).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    for (method, uri, body) in [
        ("PATCH", "/auth/me", r#"["Y"]"#),
        ("POST", "/auth/password/reset/request", r#"["ada@example.com"]"#),
        ("POST", "/plugins/hello/guestbook", r#"["Ada", "hello"]"#),
        ("POST", "/auth/login", r#" "ada@example.com" "#),
        ("POST", "/auth/register", "null"),
    ] {
        let (status, headers, body) = send(&app, json(method, uri, Some(&token), body)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {uri}: {body}");
        assert_eq!(body["error"]["code"], "unprocessable_entity", "{body}");
        assert!(body["error"]["request_id"].is_string(), "{body}");
        assert_eq!(headers["content-type"], "application/json");
    }
    let me = Request::get("/auth/me").header("authorization", format!("Bearer {token}"));
    let (_, _, body) = send(&app, me.body(Body::empty()).unwrap()).await;
    let account: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(account["display_name"], Value::Null, "the array changed nothing: {account}");
    // Malformed JSON is still the extractor's 400, and an object still passes.
    let (status, _, _) = send(&app, json("POST", "/auth/login", None, "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let patch = json("PATCH", "/auth/me", Some(&token), r#"{"display_name": "Ada"}"#);
    assert_eq!(send(&app, patch).await.0, StatusCode::OK);
}

/// Every `date-time` field of every response schema in the document, checked in real
/// answers: RFC 3339 with an offset, in UTC. A schema with such a field that no request
/// here answers with fails the test, so a new one is not forgotten.
#[tokio::test]
async fn every_documented_timestamp_is_rfc3339_in_utc() {
    let app = app("").await;
    let (_, doc) = get_json(&app, "/openapi.json").await;
    let mut pending: std::collections::BTreeSet<(String, String)> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(name, schema)| {
            let properties = schema["properties"].as_object().cloned().unwrap_or_default();
            properties
                .into_iter()
                .filter(|(_, property)| property["format"] == "date-time")
                .map(|(field, _)| (name.clone(), field))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!pending.is_empty(), "the document has timestamps: {pending:?}");
    let call = |method: &str, uri: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let request = request.body(body).unwrap();
        let app = app.clone();
        async move {
            let (status, _, body) = send(&app, request).await;
            assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
            serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)
        }
    };
    let credentials = json!({"email": "ada@example.com", "password": "correct horse"});
    call("POST", "/auth/register", None, Some(credentials.clone())).await;
    let tokens = call("POST", "/auth/login", None, Some(credentials)).await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    // A moderator's token: the login's session, with the `admin` role (every permission).
    let tokens = xcore_auth::AuthConfig::default().access_tokens(super::SECRET.as_bytes()).unwrap();
    let claims = tokens.verify(&token).unwrap();
    let (admin, _) =
        tokens.issue(&claims.sub, &claims.sid, &["admin".to_owned()], claims.iat).unwrap();
    let entry = json!({"name": "Ada", "message": "hello"});
    // Which schema each answer is, as the document names it.
    let group = call("POST", "/messaging/groups", Some(&token), Some(json!({"name": "tea"}))).await;
    let messages = format!("/messaging/conversations/{}/messages", group["id"]);
    call("POST", &messages, Some(&token), Some(json!({"body": "hello"}))).await;
    let members = format!("/messaging/groups/{}/members", group["id"]);
    let answers = [
        ("Conversation", group.clone()),
        ("Member", call("GET", &members, Some(&token), None).await["members"].clone()),
        (
            "Message",
            call("PATCH", &format!("{messages}/1"), Some(&token), Some(json!({"body": "hi"})))
                .await,
        ),
        ("Presence", call("POST", "/messaging/presence", Some(&token), None).await),
        ("ChatUser", call("GET", "/messaging/me", Some(&token), None).await["user"].clone()),
        ("User", call("GET", "/auth/me", Some(&token), None).await),
        ("SessionInfo", call("GET", "/auth/sessions", Some(&token), None).await),
        ("Entry", call("POST", "/plugins/hello/guestbook", Some(&token), Some(entry)).await),
        ("Entry", call("GET", "/plugins/hello/guestbook", None, None).await["entries"].clone()),
        (
            "Sanction",
            call(
                "POST",
                "/plugins/moderation/mutes",
                Some(&admin),
                Some(json!({"user": claims.sub, "minutes": 5})),
            )
            .await,
        ),
        (
            "Action",
            call("GET", "/plugins/moderation/actions", Some(&admin), None).await["actions"].clone(),
        ),
    ];
    for (schema, answer) in answers {
        let objects = match answer {
            Value::Array(items) => items,
            object => vec![object],
        };
        assert!(!objects.is_empty(), "{schema}: nothing to check");
        for object in objects {
            let fields: Vec<String> = pending
                .iter()
                .filter(|(name, _)| name == schema)
                .map(|(_, field)| field.clone())
                .collect();
            for field in fields {
                let value = &object[field.as_str()];
                if value.is_null() {
                    continue; // an optional timestamp not set yet (`last_login_at` is)
                }
                let text = value.as_str().unwrap_or_default();
                let parsed = chrono::DateTime::parse_from_rfc3339(text);
                assert!(parsed.is_ok(), "{schema}.{field} = {value} is not RFC 3339");
                assert_eq!(parsed.unwrap().offset().local_minus_utc(), 0, "{schema}.{field}: UTC");
                pending.remove(&(schema.to_owned(), field));
            }
        }
    }
    assert!(pending.is_empty(), "timestamps no answer here showed: {pending:?}");
}
