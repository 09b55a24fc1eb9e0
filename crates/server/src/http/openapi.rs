//! What the edge answers on every route, added to the OpenAPI document once.
//!
//! A plugin documents what its handlers answer; the statuses the stack in front of them
//! produces (a body that does not parse, is too large, is not JSON or not an object; a
//! missing or refused token; a quota spent) are the same on every route, so they are
//! added here, from facts the document and the rate limits already hold: an operation
//! with a request body gets 400, 413, 415 and 422, one with parameters 400, one with a
//! security requirement 401, one whose route has a quota 429. A route added later gets
//! them without its author thinking of them. Every error response, added here or
//! declared by a plugin, carries the error body's schema.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::Ref;
use utoipa::openapi::{Content, OpenApi, RefOr, Response};
use utoipa::{PartialSchema, ToSchema};
use xcore_middleware::RateLimit;

/// The body of every error answer.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used: `ApiError` writes the body
struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_token`, `too_many_requests`, …).
    #[schema(example = "unprocessable_entity")]
    code: String,
    /// A sentence for people.
    message: String,
    /// The request's id, also in the `x-request-id` header and every log line.
    #[schema(example = "0190b5a2c3d44e5f8a6b7c8d9e0f1a2b")]
    request_id: String,
}

/// Adds the edge's answers to every operation of `doc`; `limits` says which routes have
/// a quota.
pub(super) fn complete(doc: &mut OpenApi, limits: Option<&RateLimit>) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.schemas.insert(ErrorDetail::name().into_owned(), ErrorDetail::schema());
    for (path, item) in &mut doc.paths.paths {
        let limited = limits.is_some_and(|limits| limits.applies_to(Some(path)));
        for operation in operations(item) {
            complete_operation(operation, limited);
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn complete_operation(operation: &mut Operation, limited: bool) {
    let body = operation.request_body.is_some();
    let parameters = operation.parameters.as_ref().is_some_and(|list| !list.is_empty());
    let secured = operation.security.as_ref().is_some_and(|requirements| {
        requirements.iter().any(|requirement| {
            serde_json::to_value(requirement)
                .is_ok_and(|value| value.as_object().is_some_and(|schemes| !schemes.is_empty()))
        })
    });
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    };
    if body || parameters {
        add("400", "`bad_request`: a body that is not JSON, or a parameter of the wrong type");
    }
    if body {
        add("413", "`payload_too_large`: the body is over `server.body_limit_bytes`");
        add("415", "`unsupported_media_type`: the body is not `application/json`");
        add(
            "422",
            "`unprocessable_entity`: the body is not a JSON object, has an unknown field, or a \
             field of the wrong type",
        );
    }
    if secured {
        add("401", "`invalid_token` or `token_expired`: no valid access token");
    }
    if limited {
        add("429", "`too_many_requests`: the route's quota is spent; `Retry-After` says when");
    }
    for (status, response) in &mut operation.responses.responses {
        if let RefOr::T(response) = response
            && (status.starts_with('4') || status.starts_with('5'))
            && response.content.is_empty()
        {
            let schema = RefOr::Ref(Ref::from_schema_name(ErrorBody::name()));
            response
                .content
                .insert("application/json".to_owned(), RefOr::T(Content::new(Some(schema))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_get_the_statuses_the_stack_answers() {
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/open": {"get": {"responses": {"200": {"description": "ok"}}}},
                "/write": {"post": {
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "security": [{"bearer": []}],
                    "responses": {"201": {"description": "made"}, "409": {"description": "taken"}}
                }}
            }
        });
        let mut doc: OpenApi = serde_json::from_value(doc).unwrap();
        let limits = RateLimit::from_config(&xcore_middleware::RateLimitConfig {
            routes: [("/write".to_owned(), xcore_middleware::Quota::per(1, 1))].into(),
            ..Default::default()
        });
        complete(&mut doc, limits.as_ref());
        let doc = serde_json::to_value(&doc).unwrap();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(statuses("/open", "get"), ["200"]);
        assert_eq!(
            statuses("/write", "post"),
            ["201", "400", "401", "409", "413", "415", "422", "429"]
        );
        let taken = &doc["paths"]["/write"]["post"]["responses"]["409"];
        assert_eq!(
            taken["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(
            doc["components"]["schemas"]["ErrorDetail"]["properties"]["request_id"].is_object()
        );
    }
}
