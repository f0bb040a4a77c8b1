//! The tokens of a Cloud Workflows expression (the text inside `${ }`), each with its
//! byte range in that text, so that a parse error points inside the expression.

use std::ops::Range;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Int(i64),
    Double(f64),
    Str(String),
    Ident(String),
    True,
    False,
    Null,
    And,
    Or,
    Not,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Colon,
    Plus,
    Minus,
    Star,
    Slash,
    SlashSlash,
    Percent,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Tok {
    /// How the token reads in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Int(i) => format!("the number {i}"),
            Tok::Double(d) => format!("the number {d}"),
            Tok::Str(_) => "a string".into(),
            Tok::Ident(name) => format!("`{name}`"),
            Tok::True => "`true`".into(),
            Tok::False => "`false`".into(),
            Tok::Null => "`null`".into(),
            Tok::And => "`and`".into(),
            Tok::Or => "`or`".into(),
            Tok::Not => "`not`".into(),
            Tok::In => "`in`".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Colon => ":",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::SlashSlash => "//",
            Tok::Percent => "%",
            Tok::Eq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            _ => "?",
        }
    }
}

/// A lexing error: what, and where in the expression's text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LexError {
    pub(crate) message: String,
    pub(crate) range: Range<usize>,
}

/// The tokens of `text`, with their byte ranges.
pub(crate) fn lex(text: &str) -> Result<Vec<(Tok, Range<usize>)>, LexError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = |second: u8| bytes.get(i + 1) == Some(&second);
        let (tok, len) = match c {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b',' => (Tok::Comma, 1),
            b':' => (Tok::Colon, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'%' => (Tok::Percent, 1),
            b'/' if two(b'/') => (Tok::SlashSlash, 2),
            b'/' => (Tok::Slash, 1),
            b'=' if two(b'=') => (Tok::Eq, 2),
            b'!' if two(b'=') => (Tok::Ne, 2),
            b'<' if two(b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if two(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => (Tok::Dot, 1),
            b'"' | b'\'' => {
                let (s, len) = string(text, i)?;
                (Tok::Str(s), len)
            }
            b'0'..=b'9' | b'.' => number(text, i)?,
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| !(*b == b'_' || b.is_ascii_alphanumeric()))
                    .map_or(bytes.len(), |n| i + n);
                let word = &text[i..end];
                (keyword(word), end - i)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                let hint = match ch {
                    '=' => " (comparison is `==`; assignments belong in an `assign` step)",
                    '&' | '|' => " (logical operators are `and` and `or`)",
                    '!' => " (negation is `not`)",
                    _ => "",
                };
                return Err(LexError {
                    message: format!("unexpected character `{ch}`{hint}"),
                    range: i..i + ch.len_utf8(),
                });
            }
        };
        i += len;
        out.push((tok, start..i));
    }
    Ok(out)
}

/// Keywords are lower case or upper case, never mixed; `True`, `False` and `Null`
/// also, as the documentation spells booleans.
fn keyword(word: &str) -> Tok {
    match word {
        "true" | "True" | "TRUE" => Tok::True,
        "false" | "False" | "FALSE" => Tok::False,
        "null" | "Null" | "NULL" => Tok::Null,
        "and" | "AND" => Tok::And,
        "or" | "OR" => Tok::Or,
        "not" | "NOT" => Tok::Not,
        "in" | "IN" => Tok::In,
        other => Tok::Ident(other.to_string()),
    }
}

fn number(text: &str, start: usize) -> Result<(Tok, usize), LexError> {
    let bytes = text.as_bytes();
    let mut end = start;
    let mut double = false;
    while end < bytes.len() {
        match bytes[end] {
            b'0'..=b'9' => end += 1,
            b'.' if !double && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) => {
                double = true;
                end += 1;
            }
            b'.' if !double && end > start => {
                // `1.` is a double too.
                double = true;
                end += 1;
            }
            b'e' | b'E' => {
                double = true;
                end += 1;
                if matches!(bytes.get(end), Some(b'+' | b'-')) {
                    end += 1;
                }
            }
            _ => break,
        }
    }
    let literal = &text[start..end];
    let range = start..end;
    if double {
        let value: f64 = literal.parse().map_err(|_| LexError {
            message: format!("`{literal}` is not a number"),
            range: range.clone(),
        })?;
        Ok((Tok::Double(value), end - start))
    } else {
        let value: i64 = literal.parse().map_err(|_| LexError {
            message: format!(
                "the integer {literal} does not fit in 64 bits (write it as a double, {literal}.0)"
            ),
            range: range.clone(),
        })?;
        Ok((Tok::Int(value), end - start))
    }
}

/// A string literal in double or single quotes, with backslash escapes.
fn string(text: &str, start: usize) -> Result<(String, usize), LexError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        let at = start + 1 + offset;
        match c {
            c if c == quote => return Ok((out, at + 1 - start)),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                out.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| LexError {
                                message: format!("`\\u{hex}` is not a character"),
                                range: at..at + 2 + hex.len(),
                            })?
                    }
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    Err(LexError {
        message: format!("this string has no closing {quote}"),
        range: start..text.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn numbers_keep_integer_and_double_apart() {
        assert_eq!(
            toks("1 2.5 3. 1e3 x.y"),
            vec![
                Tok::Int(1),
                Tok::Double(2.5),
                Tok::Double(3.0),
                Tok::Double(1000.0),
                Tok::Ident("x".into()),
                Tok::Dot,
                Tok::Ident("y".into())
            ]
        );
        assert!(lex("99999999999999999999").is_err());
    }

    #[test]
    fn keywords_are_lower_or_upper_case() {
        assert_eq!(
            toks("and OR Not"),
            vec![Tok::And, Tok::Or, Tok::Ident("Not".into())]
        );
        assert_eq!(
            toks("a // b"),
            vec![
                Tok::Ident("a".into()),
                Tok::SlashSlash,
                Tok::Ident("b".into())
            ]
        );
    }

    #[test]
    fn strings_take_escapes_and_report_where_they_end() {
        assert_eq!(
            toks(r#""a\"b" 'c'"#),
            vec![Tok::Str("a\"b".into()), Tok::Str("c".into())]
        );
        let error = lex(r#"1 + "abc"#).unwrap_err();
        assert_eq!(error.range, 4..8);
        assert!(lex("a = b").unwrap_err().message.contains("=="));
    }
}
