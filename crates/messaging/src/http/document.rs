//! What the `/messaging` document states beyond the handlers' annotations: the checks the
//! engine makes of names and drafts, as schema keywords (the body's length set by the
//! configuration), so a request the document calls valid is one the engine accepts.

use utoipa::openapi::schema::{AdditionalProperties, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi, RefOr};

use crate::MessagingConfig;

/// No control character anywhere, and at least one character that is not blank: what
/// `check_name` accepts (`char::is_control`, `char::is_whitespace`).
const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*\
    [^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]\
    [^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// At least one character that is not blank (`str::trim` would keep it).
const NOT_BLANK: &str = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";

/// Adds the constraints to `doc`, the document of the messaging routes.
pub(super) fn complete(doc: &mut OpenApi, config: &MessagingConfig) {
    let Some(components) = doc.components.as_mut() else { return };
    for (schema, property, max) in [
        ("NewGroup", "name", crate::engine::MAX_GROUP_NAME),
        ("GroupChange", "name", crate::engine::MAX_GROUP_NAME),
        ("ProfileChange", "username", crate::engine::MAX_USERNAME),
    ] {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(property) {
            name(property, max);
        }
    }
    components.schemas.insert("NewMessage".to_owned(), RefOr::T(new_message(config)));
}

fn name(object: &mut Object, max: usize) {
    object.min_length = Some(1);
    object.max_length = Some(max);
    object.pattern = Some(NAME_PATTERN.to_owned());
}

/// A message as the API takes it: a body of 1 to the configured length that is not all
/// blank, an attachment object, or both (no other key, and not neither).
fn new_message(config: &MessagingConfig) -> Schema {
    let body = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(config.max_message_chars))
        .pattern(Some(NOT_BLANK))
        .description(Some("The text; it may be left out when there is an attachment."));
    let attachment = ObjectBuilder::new().schema_type(Type::Object).description(Some(
        "A JSON object describing attached files (names, types, URLs), at most \
         `messaging.max_attachment_bytes` once serialized; left out for none.",
    ));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("body", body)
        .property("attachment", attachment)
        .min_properties(Some(1))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some("A text, an attachment, or both."))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_schema_states_the_rules() {
        let schema = serde_json::to_value(new_message(&MessagingConfig::default())).unwrap();
        assert_eq!(schema["properties"]["body"]["maxLength"], 4000, "{schema}");
        assert_eq!(schema["properties"]["attachment"]["type"], "object", "{schema}");
        assert_eq!(
            (&schema["minProperties"], &schema["additionalProperties"]),
            (&1.into(), &false.into())
        );
    }
}
