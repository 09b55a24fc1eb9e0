//! JSON request bodies are objects, checked once for every route.
//!
//! serde reads a struct from a JSON array as readily as from an object (its sequence
//! form: `["Ada", "hello"]` fills the fields in order), so a handler that takes
//! `Json<Body>` would accept a body that its schema says is an object. Rather than every
//! handler of every plugin guarding against that, the edge reads each JSON body before
//! the router does and answers 422 with the standard error body when it is an array or a
//! bare value. Bodies that are not JSON at all, and empty ones, are left to the handler's
//! extractor (400 or 415).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use xcore_core::http::ApiError;

/// Whether `request` says it carries JSON (`application/json` or a `+json` type).
pub(super) fn declares_json(request: &Request) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else { return false };
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// `request` with its body read (at most `limit` bytes) and put back, or the answer that
/// refuses it: 413 past the limit, 422 for a JSON value that is not an object.
pub(super) async fn objects_only(request: Request, limit: usize) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let refused = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        );
        return Err(refused.into_response());
    };
    if let Some(kind) = not_an_object(&bytes) {
        let refused = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            format!("the request body must be a JSON object, not {kind}"),
        );
        return Err(refused.into_response());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// What the JSON value in `body` is when it is clearly not an object, judged by its first
/// character; `None` for an object, an empty body or one that is not JSON.
fn not_an_object(body: &[u8]) -> Option<&'static str> {
    let first = body.iter().find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))?;
    match first {
        b'[' => Some("an array"),
        b'"' => Some("a string"),
        b'0'..=b'9' | b'-' => Some("a number"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_pass() {
        assert_eq!(not_an_object(br#" {"a": 1}"#), None);
        assert_eq!(not_an_object(b""), None);
        assert_eq!(not_an_object(b"<xml/>"), None, "not JSON: the extractor says 400");
        assert_eq!(not_an_object(br#"["Y"]"#), Some("an array"));
        assert_eq!(not_an_object(b"\n\t 42"), Some("a number"));
        assert_eq!(not_an_object(b"-1"), Some("a number"));
        assert_eq!(not_an_object(br#""x""#), Some("a string"));
        assert_eq!(not_an_object(b"true"), Some("a boolean"));
        assert_eq!(not_an_object(b"null"), Some("null"));
    }

    #[test]
    fn json_is_known_by_its_media_type() {
        let with = |value: &str| {
            let request = Request::builder().header(header::CONTENT_TYPE, value);
            declares_json(&request.body(Body::empty()).unwrap())
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!with("+json"));
        assert!(!declares_json(&Request::new(Body::empty())));
    }
}
