//! JSON request decoding that names the offending field.
//!
//! Syntax errors are 400; well-formed JSON with a missing, mistyped or unknown field is
//! 422 with `field` set (`email`, `records[3].total_tokens`).

use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::ApiError;

/// Decodes `body` as `T`.
///
/// The fast path is plain `serde_json`; only a body that fails is decoded again with
/// path tracking, to name the field (tracking costs on every value of a large usage
/// batch, and well-formed batches are the norm).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every request body is a JSON object; serde would also read a struct from an
    // array of its fields in order (`[]` for a struct of optional fields).
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::Unprocessable {
            message: "invalid type: expected a JSON object, got an array".into(),
            field: None,
            code: "invalid_type",
        });
    }
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        classify(path, err.into_inner())
    })?;
    de.end().map_err(|err| classify(".".to_owned(), err))?;
    Ok(value)
}

fn classify(path: String, err: serde_json::Error) -> ApiError {
    let category = err.classify();
    let message = strip_position(&err.to_string());
    // `?` marks a position serde could not name (e.g. inside truncated input).
    let parent = if path == "." || path.contains('?') {
        None
    } else {
        Some(path)
    };
    match category {
        Category::Data => {
            // serde reports a missing or unknown field at the parent's path, naming
            // the field only in the message (between backticks).
            let (code, named) = if message.starts_with("missing field") {
                ("missing_field", backticked(&message))
            } else if message.starts_with("unknown field") {
                ("unknown_field", backticked(&message))
            } else {
                ("invalid_type", None)
            };
            let field = match (parent, named) {
                (Some(parent), Some(name)) if !parent.ends_with(&name) => {
                    Some(format!("{parent}.{name}"))
                }
                (parent, Some(name)) => parent.or(Some(name)),
                (parent, None) => parent,
            };
            let message = match &field {
                Some(field) => format!("{field}: {message}"),
                None => message,
            };
            ApiError::Unprocessable {
                message,
                field,
                code,
            }
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson {
            message: format!("malformed JSON: {message}"),
            field: parent,
        },
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    fn field(body: &str) -> (u16, Option<String>) {
        use actix_web::ResponseError as _;
        let err = decode::<Outer>(body.as_bytes()).unwrap_err();
        let field = match &err {
            ApiError::Unprocessable { field, .. } | ApiError::MalformedJson { field, .. } => {
                field.clone()
            }
            other => panic!("unexpected {other:?}"),
        };
        (err.status_code().as_u16(), field)
    }

    #[test]
    fn fields_are_named() {
        assert_eq!(field(r#"{"items":[]}"#), (422, Some("name".into())));
        assert_eq!(
            field(r#"{"name":1,"items":[]}"#),
            (422, Some("name".into()))
        );
        assert_eq!(
            field(r#"{"name":"a","items":[],"x":1}"#),
            (422, Some("x".into()))
        );
        assert_eq!(
            field(r#"{"name":"a","items":[{"n":1},{"n":"2"}]}"#),
            (422, Some("items[1].n".into()))
        );
        assert_eq!(
            field(r#"{"name":"a","items":[{"n":1},{}]}"#),
            (422, Some("items[1].n".into()))
        );
        assert_eq!(
            field(r#"{"name":"a","items":[{"n":9223372036854775808}]}"#),
            (422, Some("items[0].n".into()))
        );
        assert_eq!(field(r#"{"name":"a","#).0, 400);
        assert_eq!(field(r#"{"name":"a","items":[]} trailing"#).0, 400);
        assert_eq!(field("").0, 400);
    }
}
