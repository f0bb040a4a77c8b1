//! A fast path for the most common expression of all: one string literal with a few
//! `\($name)` or `\(.field)` interpolations, such as the endpoint of a call
//! (`"https://api.example.com/items/\($item)"`).
//!
//! Such an expression is recognised when it is compiled and then evaluated here,
//! without jq, whenever every interpolated value is a string, an integer, a boolean
//! or null: the cases where jq's text for the value is plain. Anything else (a float,
//! an array, an object, a field of something that is not an object) returns `None`
//! and the caller runs jq, so the result is always exactly jq's.

use serde_json::Value;

use crate::Vars;

/// The pieces of a recognised expression, in order.
#[derive(Debug, PartialEq)]
pub(crate) struct Interpolation {
    parts: Vec<Part>,
}

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// `\($name)`: a variable, named without `$`.
    Var(String),
    /// `\(.name)`: a field of the input.
    Field(String),
}

impl Interpolation {
    /// Recognises `text` (jq, without `${ }`), or returns `None` for anything but a
    /// single string literal whose interpolations are all `$name` or `.name`.
    pub(crate) fn recognise(text: &str) -> Option<Interpolation> {
        let body = text.trim().strip_prefix('"')?.strip_suffix('"')?;
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return None,
                '\\' => match chars.next()? {
                    '(' => {
                        let rest = chars.as_str();
                        let end = rest.find(')')?;
                        let inner = rest[..end].trim();
                        let part = if let Some(name) = inner.strip_prefix('$') {
                            Part::Var(identifier(name)?.to_string())
                        } else {
                            Part::Field(identifier(inner.strip_prefix('.')?)?.to_string())
                        };
                        if !literal.is_empty() {
                            parts.push(Part::Text(std::mem::take(&mut literal)));
                        }
                        parts.push(part);
                        chars = rest[end + 1..].chars();
                    }
                    '"' => literal.push('"'),
                    '\\' => literal.push('\\'),
                    '/' => literal.push('/'),
                    'n' => literal.push('\n'),
                    't' => literal.push('\t'),
                    'r' => literal.push('\r'),
                    'b' => literal.push('\u{8}'),
                    'f' => literal.push('\u{c}'),
                    // `\u` escapes and anything unusual: jq decides.
                    _ => return None,
                },
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        // A plain string literal is cheap enough through jq; only interpolations gain.
        parts
            .iter()
            .any(|p| !matches!(p, Part::Text(_)))
            .then_some(Interpolation { parts })
    }

    /// The string jq would produce, or `None` where only jq can tell.
    pub(crate) fn eval(&self, input: &Value, vars: &Vars<'_>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Text(text) => {
                    out.push_str(text);
                    continue;
                }
                Part::Var(name) => vars.get(name).unwrap_or(&Value::Null),
                Part::Field(name) => match input {
                    Value::Object(map) => map.get(name).unwrap_or(&Value::Null),
                    Value::Null => &Value::Null,
                    _ => return None,
                },
            };
            match value {
                Value::String(s) => out.push_str(s),
                Value::Number(n) => out.push_str(&n.as_i64()?.to_string()),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Null => out.push_str("null"),
                Value::Array(_) | Value::Object(_) => return None,
            }
        }
        Some(out)
    }
}

/// `name` if it is a jq identifier (letters, digits and `_`, not starting with a digit).
fn identifier(name: &str) -> Option<&str> {
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_literals_with_simple_interpolations() {
        let parts = |text: &str| Interpolation::recognise(text).map(|i| i.parts);
        assert_eq!(
            parts(r#""http://h/items/\($item)?q=\(.name)""#),
            Some(vec![
                Part::Text("http://h/items/".into()),
                Part::Var("item".into()),
                Part::Text("?q=".into()),
                Part::Field("name".into()),
            ])
        );
        assert_eq!(
            parts(r#" "a\"b\\\( $x )" "#),
            Some(vec![Part::Text("a\"b\\".into()), Part::Var("x".into())])
        );
        for text in [
            r#""no interpolation""#,
            r#""\($x + 1)""#,
            r#""\(.a.b)""#,
            r#""\($x)" + "y""#,
            r#""\u00e9\($x)""#,
            r#""\(."quoted")""#,
            r#""\($1x)""#,
            r#".name"#,
            r#""\($x)"#,
        ] {
            assert_eq!(parts(text), None, "{text}");
        }
    }
}
