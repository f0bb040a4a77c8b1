//! A structural check that runs before jaq sees an expression.
//!
//! jaq parses, compiles and evaluates by recursion, so an expression nested a
//! thousand levels deep, or a chain of a few thousand operators, overflows a
//! thread's stack and aborts the whole process. A workflow is untrusted input,
//! so this scanner bounds nesting and size without recursing itself, and refuses
//! `def`: a user-defined function can recurse without bound at evaluation time.

use crate::CompileError;

/// Deepest nesting of `(`, `[`, `{` and string interpolations.
pub const MAX_NESTING: usize = 64;
/// Most tokens in one expression. Keeps operator chains far from the stack limit.
pub const MAX_TOKENS: usize = 1000;

enum Frame {
    /// Inside brackets in code; the char closes the frame.
    Code(char),
    /// Inside a string literal.
    Str,
    /// Inside `\( … )` in a string literal.
    Interp,
}

/// Scans `text` and reports the first limit it breaks, with the byte range of the offender.
pub(crate) fn check(text: &str) -> Result<(), CompileError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut nesting = 0usize;
    let mut tokens = 0usize;
    let mut prev_significant: Option<char> = None;
    let mut chars = text.char_indices().peekable();

    let too_deep = |at: usize| CompileError {
        message: format!("the expression nests deeper than {MAX_NESTING} levels"),
        range: at..at + 1,
        help: Some("split it across several tasks or simplify it".into()),
    };

    while let Some((i, c)) = chars.next() {
        if matches!(stack.last(), Some(Frame::Str)) {
            match c {
                '\\' => {
                    if let Some(&(_, '(')) = chars.peek() {
                        chars.next();
                        stack.push(Frame::Interp);
                        nesting += 1;
                        tokens += 1;
                        if nesting > MAX_NESTING {
                            return Err(too_deep(i));
                        }
                    } else {
                        chars.next();
                    }
                }
                '"' => {
                    stack.pop();
                }
                _ => {}
            }
            continue;
        }

        if c.is_whitespace() {
            continue;
        }
        tokens += 1;
        if tokens > MAX_TOKENS {
            return Err(CompileError {
                message: format!("the expression is longer than {MAX_TOKENS} tokens"),
                range: i..text.len(),
                help: Some(
                    "split it across several tasks; large data belongs in the YAML, not in jq"
                        .into(),
                ),
            });
        }
        match c {
            '#' => {
                // A comment runs to the end of the line.
                tokens -= 1;
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            '"' => stack.push(Frame::Str),
            '(' | '[' | '{' => {
                let closer = match c {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                stack.push(Frame::Code(closer));
                nesting += 1;
                if nesting > MAX_NESTING {
                    return Err(too_deep(i));
                }
            }
            ')' | ']' | '}' => match stack.last() {
                Some(Frame::Interp) if c == ')' => {
                    stack.pop();
                    nesting -= 1;
                }
                Some(Frame::Code(closer)) if *closer == c => {
                    stack.pop();
                    nesting -= 1;
                }
                // A stray closer is a syntax error that jaq reports precisely.
                _ => {}
            },
            c if c.is_alphabetic() || c == '_' || c == '$' || c == '@' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' || d == ':' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &text[i..end];
                if word == "def" && prev_significant != Some('.') && starts_identifier(&text[end..])
                {
                    return Err(CompileError {
                        message: "function definitions (`def`) are not allowed in workflow expressions".into(),
                        range: i..end,
                        help: Some(
                            "a recursive definition could exhaust the engine's stack; use the built-in filters \
                             (map, reduce, until, recurse, …) instead"
                                .into(),
                        ),
                    });
                }
                prev_significant = word.chars().last();
                continue;
            }
            _ => {}
        }
        prev_significant = Some(c);
    }
    Ok(())
}

/// True if `rest`, after blanks, begins with an identifier: what follows `def` in a definition.
fn starts_identifier(rest: &str) -> bool {
    rest.trim_start()
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_expressions() {
        for ok in [
            ".a | length",
            r#""Hello \(.user.firstName) \(.user.lastName)!""#,
            "{ def: 1 } | .def",
            ". as $def | $def",
            "# a comment with ( ( (\n.a",
            r#""unbalanced ( in a string""#,
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_deep_nesting_long_chains_and_def() {
        let deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        let err = check(&deep).unwrap_err();
        assert!(
            err.message.contains("nests deeper than 64"),
            "{}",
            err.message
        );
        assert_eq!(err.range.start, 64);

        let interp = format!("{}1{}", "\"\\(".repeat(65), ")\"".repeat(65));
        assert!(check(&interp).unwrap_err().message.contains("nests deeper"));

        let chain = format!("1{}", "+1".repeat(600));
        assert!(
            check(&chain)
                .unwrap_err()
                .message
                .contains("longer than 1000 tokens")
        );

        let err = check("def f: 1 + f; f").unwrap_err();
        assert!(err.message.contains("`def`"));
        assert_eq!(err.range, 0..3);
    }
}
