//! Problems found in a workflow document, and how they are shown: as compiler
//! style text (`file:line:col: error: message`, the line, a caret) or as JSON.

use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Byte range in the source that the problem is about.
    pub range: Range<usize>,
    /// JSON pointer to the place in the document, such as `/do/2/renderChunks/for/in`.
    pub path: String,
    /// A suggestion, such as the key the author probably meant.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Maps byte offsets to 1-based lines and columns (columns count characters).
#[derive(Clone, Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column of `offset`.
    pub fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let col = source[self.starts[line]..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// Byte offset of a 1-based line and column, clamped to the source.
    pub fn offset(&self, source: &str, line: usize, col: usize) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return source.len();
        };
        let text = &source[start..self.line_end(source, line - 1)];
        start
            + text
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(text.len(), |(i, _)| i)
    }

    fn line_end(&self, source: &str, line: usize) -> usize {
        self.starts
            .get(line + 1)
            .map_or(source.len(), |&next| next - 1)
    }

    /// The text of 0-based `line`, without its line break.
    fn line_text<'s>(&self, source: &'s str, line: usize) -> &'s str {
        let text = &source[self.starts[line]..self.line_end(source, line)];
        text.strip_suffix('\r').unwrap_or(text)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders diagnostics the way compilers print them, in source order.
pub fn render(file: &str, source: &str, diagnostics: &[Diagnostic]) -> String {
    let index = LineIndex::new(source);
    let mut out = String::new();
    for d in sorted(diagnostics) {
        let (line, col) = index.line_col(source, d.range.start);
        let severity = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{file}:{line}:{col}: {severity}: {}", d.message);
        let gutter = line.to_string().len().max(3) + 2;
        if !source.is_empty() {
            let text = index.line_text(source, line - 1);
            let _ = writeln!(out, "{line:>gutter$} | {text}");
            // Keep tabs in the padding so that the caret lines up with the text above.
            let pad: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let end = d.range.end.clamp(d.range.start, source.len());
            let width = source
                [floor_char_boundary(source, d.range.start)..floor_char_boundary(source, end)]
                .chars()
                .take_while(|&c| c != '\n')
                .count()
                .clamp(1, text.chars().count().saturating_sub(col - 1).max(1));
            let _ = writeln!(out, "{:gutter$} | {pad}{}", "", "^".repeat(width));
        }
        if let Some(help) = &d.help {
            let _ = writeln!(out, "{:gutter$} = help: {help}", "");
        }
        if !d.path.is_empty() || !source.is_empty() {
            let _ = writeln!(
                out,
                "{:gutter$} = path: {}",
                "",
                if d.path.is_empty() { "/" } else { &d.path }
            );
        }
    }
    out
}

/// One diagnostic as machine-readable JSON.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub severity: Severity,
    pub message: &'a str,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
}

/// Diagnostics as JSON records, in source order.
pub fn to_json<'a>(
    file: &'a str,
    source: &str,
    diagnostics: &'a [Diagnostic],
) -> Vec<JsonDiagnostic<'a>> {
    let index = LineIndex::new(source);
    sorted(diagnostics)
        .map(|d| {
            let (line, column) = index.line_col(source, d.range.start);
            let (end_line, end_column) = index.line_col(source, d.range.end);
            JsonDiagnostic {
                file,
                line,
                column,
                end_line,
                end_column,
                severity: d.severity,
                message: &d.message,
                path: &d.path,
                help: d.help.as_deref(),
            }
        })
        .collect()
}

fn sorted(diagnostics: &[Diagnostic]) -> impl Iterator<Item = &Diagnostic> {
    let mut v: Vec<&Diagnostic> = diagnostics.iter().collect();
    v.sort_by_key(|d| (d.range.start, d.range.end));
    v.into_iter()
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let source = "do:\n  - a:\n      sett: 1\n";
        let d = Diagnostic {
            severity: Severity::Error,
            message: "unknown key `sett` in task `a`".into(),
            range: 17..21,
            path: "/do/0/a/sett".into(),
            help: Some("did you mean `set`?".into()),
        };
        expect![[r#"
            wf.yaml:3:7: error: unknown key `sett` in task `a`
                3 |       sett: 1
                  |       ^^^^
                  = help: did you mean `set`?
                  = path: /do/0/a/sett
        "#]]
        .assert_eq(&render("wf.yaml", source, &[d]));
    }

    #[test]
    fn line_index_round_trips() {
        let source = "ab\nçd\n\nx";
        let index = LineIndex::new(source);
        for offset in [0, 1, 3, 5, 6, 7, 8] {
            let (line, col) = index.line_col(source, offset);
            assert_eq!(index.offset(source, line, col), offset, "offset {offset}");
        }
        assert_eq!(index.line_col(source, 5), (2, 2));
    }
}
