//! URI templates in endpoints, as far as the DSL supports them: RFC 6570
//! simple string expansion of top-level properties, as in
//! `https://petstore.swagger.io/v2/pet/{petId}`.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::EvalError;

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const SIMPLE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A `{name}`; the name is taken verbatim, so `{pet.id}` reads the property `"pet.id"`.
    Var(String),
}

/// A parsed URI template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriTemplate {
    text: String,
    parts: Vec<Part>,
}

/// A malformed template: what is wrong and the byte range in the template text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriTemplateError {
    pub message: String,
    pub range: std::ops::Range<usize>,
}

impl UriTemplate {
    pub fn parse(text: &str) -> Result<UriTemplate, UriTemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    break;
                }
                Some(at) if rest.as_bytes()[at] == b'}' => {
                    return Err(UriTemplateError {
                        message: "`}` without a matching `{` in the URI template".into(),
                        range: offset + at..offset + at + 1,
                    });
                }
                Some(open) => {
                    if open > 0 {
                        parts.push(Part::Literal(rest[..open].to_string()));
                    }
                    let Some(len) = rest[open + 1..].find('}') else {
                        return Err(UriTemplateError {
                            message: "`{` without a closing `}` in the URI template".into(),
                            range: offset + open..offset + rest.len(),
                        });
                    };
                    let name = &rest[open + 1..open + 1 + len];
                    if name.is_empty()
                        || name.contains('{')
                        || name.chars().any(char::is_whitespace)
                    {
                        return Err(UriTemplateError {
                            message: format!("`{{{name}}}` is not a variable name"),
                            range: offset + open..offset + open + len + 2,
                        });
                    }
                    parts.push(Part::Var(name.to_string()));
                    let consumed = open + len + 2;
                    rest = &rest[consumed..];
                    offset += consumed;
                }
            }
        }
        Ok(UriTemplate {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the template has no `{variables}`.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Expands the template with the top-level properties of `input`.
    /// A missing or `null` property expands to nothing; an array or object is an error.
    pub fn expand(&self, input: &Value) -> Result<String, EvalError> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(name) => {
                    let value = input.get(name).unwrap_or(&Value::Null);
                    let text = match value {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(EvalError {
                                message: format!(
                                    "`{{{name}}}` in the URI template is an {}, but only a string, number, \
                                     boolean or null can be substituted",
                                    if value.is_array() { "array" } else { "object" }
                                ),
                                expression: self.text.clone(),
                                origin: String::new(),
                                limit: None,
                                data: None,
                            });
                        }
                    };
                    out.extend(utf8_percent_encode(&text, SIMPLE));
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for UriTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn expands_top_level_properties_verbatim_and_encoded() {
        let t =
            UriTemplate::parse("https://x.test/pet/{petId}?q={q}&k={pet.id}&n={missing}").unwrap();
        assert!(!t.is_literal());
        let out = t
            .expand(&json!({"petId": 1, "q": "a b/c", "pet.id": true}))
            .unwrap();
        assert_eq!(out, "https://x.test/pet/1?q=a%20b%2Fc&k=true&n=");
    }

    #[test]
    fn rejects_malformed_templates_and_structured_values() {
        assert_eq!(
            UriTemplate::parse("https://x/{id").unwrap_err().range,
            10..13
        );
        assert_eq!(
            UriTemplate::parse("https://x/id}").unwrap_err().range,
            12..13
        );
        assert_eq!(
            UriTemplate::parse("https://x/{}").unwrap_err().range,
            10..12
        );
        let t = UriTemplate::parse("https://x/{id}").unwrap();
        let err = t.expand(&json!({"id": [1]})).unwrap_err();
        assert!(err.message.contains("is an array"), "{}", err.message);
    }
}
