//! What the `/auth` document states beyond the handlers' annotations: the checks the
//! handlers make of their bodies as schema keywords (some set by the configuration), the
//! flows as links, and the 503 every operation answers while the database is
//! unreachable.

use serde_json::json;
use utoipa::openapi::link::Link;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::{OpenApi, RefOr, Response};

use crate::AuthConfig;

/// Adds all of it to `doc`, the document of the auth routes.
pub(super) fn complete(doc: &mut OpenApi, config: &AuthConfig) {
    describe_constraints(doc, config);
    describe_links(doc);
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            let unavailable =
                Response::new("`service_unavailable`: the database cannot be reached; try again");
            operation.responses.responses.entry("503".to_owned()).or_insert(unavailable.into());
        }
    }
}

/// The flows as OpenAPI links, so a client generator or a stateful tester can follow
/// them: register, then log in with the same email and password; a login's or a
/// refresh's tokens to refresh and to log out; the sessions listed to end one.
fn describe_links(doc: &mut OpenApi) {
    let links = [
        (
            "/register",
            "201",
            "login",
            "login",
            None,
            json!({
                "email": "$request.body#/email",
                "password": "$request.body#/password",
            }),
        ),
        (
            "/login",
            "200",
            "refresh",
            "refresh",
            None,
            json!({"refresh_token": "$response.body#/refresh_token"}),
        ),
        (
            "/login",
            "200",
            "logout",
            "logout",
            None,
            json!({"refresh_token": "$response.body#/refresh_token"}),
        ),
        (
            "/refresh",
            "200",
            "refresh",
            "refresh",
            None,
            json!({"refresh_token": "$response.body#/refresh_token"}),
        ),
        (
            "/refresh",
            "200",
            "logout",
            "logout",
            None,
            json!({"refresh_token": "$response.body#/refresh_token"}),
        ),
        (
            "/sessions",
            "200",
            "end_session",
            "end_session",
            Some(("id", "$response.body#/0/id")),
            serde_json::Value::Null,
        ),
    ];
    for (path, status, name, operation_id, parameter, body) in links {
        let Some(item) = doc.paths.paths.get_mut(path) else { continue };
        let Some(operation) = item.post.as_mut().or(item.get.as_mut()) else { continue };
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else {
            continue;
        };
        let mut link = Link::default();
        link.operation_id = operation_id.to_owned();
        if let Some((key, value)) = parameter {
            link.parameters.insert(key.to_owned(), json!(value));
        }
        link.request_body = (!body.is_null()).then_some(body);
        response.links.insert(name.to_owned(), RefOr::T(link));
    }
}

/// What the handlers check of their bodies, as schema keywords: the email pattern, the
/// password lengths the configuration sets, the display name's length and characters.
fn describe_constraints(doc: &mut OpenApi, config: &AuthConfig) {
    let Some(components) = doc.components.as_mut() else { return };
    let mut constrain = |schema: &str, property: &str, apply: &dyn Fn(&mut Object)| {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(property) {
            apply(property);
        }
    };
    let email = |object: &mut Object| {
        object.pattern = Some(crate::accounts::EMAIL_PATTERN.to_owned());
        object.max_length = Some(crate::accounts::MAX_EMAIL_LEN);
    };
    for schema in ["RegisterRequest", "LoginRequest", "ResetRequest", "ResetConfirm"] {
        constrain(schema, "email", &email);
    }
    let (min, max) = (config.password.min_length, config.password.max_length);
    let password = |object: &mut Object| {
        object.min_length = Some(min);
        object.max_length = Some(max);
    };
    constrain("RegisterRequest", "password", &password);
    constrain("ResetConfirm", "new_password", &password);
    constrain("ChangePassword", "new_password", &password);
    let display_name = |object: &mut Object| {
        object.max_length = Some(crate::service::MAX_DISPLAY_NAME);
        object.pattern = Some("^[^\\u0000-\\u001F\\u007F-\\u009F]*$".to_owned());
    };
    constrain("RegisterRequest", "display_name", &display_name);
    constrain("UpdateMe", "display_name", &display_name);
}
