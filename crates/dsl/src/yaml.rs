//! The positioned syntax tree: YAML (or JSON, which YAML 1.2 reads too) parsed
//! into nodes that remember their byte range in the source.
//!
//! serde-saphyr does the parsing, with budgets that bound depth, node count and
//! alias expansion, so a YAML bomb fails fast with a clear message. Keys are kept
//! as their source text, and YAML 1.1 spellings (`on`, `yes`) stay strings, so
//! `schedule.on` is a key and not the boolean `true`.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// Deepest nesting of mappings and sequences a workflow document may have.
pub const MAX_DEPTH: usize = 128;
/// Most nodes a workflow document may have, aliases expanded.
pub const MAX_NODES: usize = 250_000;

/// Runs a step of a recursive walk on a fresh stack segment when the current one
/// runs low. Documents nest up to [`MAX_DEPTH`] levels and every walk over them
/// recurses (parsing, decoding, conversion), so without this a deep but legal
/// document could overflow a small thread stack, such as a test's or tokio's. The
/// margin is wide: in a debug build, one level of the YAML parser's own recursion
/// between two of these checks can take more than 64 KiB.
pub fn deep<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(256 * 1024, 2 * 1024 * 1024, f)
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    /// Byte range of the node in the source (for quoted scalars, including the quotes).
    pub range: Range<usize>,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in source order; duplicate keys are kept so that they can be reported.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// How the kind of this node reads in a message: "a string", "a mapping", ….
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::UInt(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The node at a JSON pointer below this one (`/do/0/greet/call`), if there is one.
    pub fn at(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for part in pointer.split('/').skip(1) {
            let part = part.replace("~1", "/").replace("~0", "~");
            node = match &node.kind {
                Kind::Map(entries) => &entries.iter().find(|(k, _)| k.as_str() == Some(&part))?.1,
                Kind::Seq(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The node as plain JSON data.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        deep(|| match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::UInt(u) => Value::from(*u),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        })
    }
}

/// A YAML syntax error or a broken limit, with the byte offset where it happened.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    /// 1-based line and column, when the parser knows them.
    pub line_col: Option<(usize, usize)>,
    pub help: Option<String>,
}

pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
        },
    };
    let root: Spanned<Kind> =
        serde_saphyr::from_str_with_options(source, options).map_err(syntax_error)?;
    Ok(node(root))
}

fn node(spanned: Spanned<Kind>) -> Node {
    Node {
        range: range(&spanned.referenced),
        kind: spanned.value,
    }
}

fn range(location: &Location) -> Range<usize> {
    let span = location.span();
    let start = span.byte_offset().unwrap_or(0) as usize;
    start..start + span.byte_len().unwrap_or(0) as usize
}

fn syntax_error(error: serde_saphyr::Error) -> SyntaxError {
    let line_col = error
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column() as usize));
    // Budget errors can arrive wrapped, so they are recognised by their text.
    let text = strip_location(&error.to_string());
    let message = match text.strip_prefix("budget breached: ") {
        Some(breach) => budget_message(breach),
        None => text,
    };
    let help = message.contains("mapping values are not allowed").then(|| {
        "a plain YAML string cannot contain `: `; quote the value, as in '${ { a: .b } }'"
            .to_string()
    });
    SyntaxError {
        message,
        line_col,
        help,
    }
}

/// The budget breach as a sentence; the parser's own text is a debug dump.
fn budget_message(breach: &str) -> String {
    let what = breach.split([' ', '{']).next().unwrap_or(breach);
    match what {
        "Depth" => format!("the document nests deeper than {MAX_DEPTH} levels"),
        "Nodes" => format!("the document has more than {MAX_NODES} nodes (aliases expanded)"),
        "Aliases" | "Anchors" | "Events" => {
            format!(
                "the document exceeds a YAML safety limit ({breach}); it looks like an alias bomb"
            )
        }
        _ => format!("the document exceeds a YAML safety limit ({breach})"),
    }
}

/// serde-saphyr appends " at line L, column C"; diagnostics carry the position separately.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deep(|| deserializer.deserialize_any(KindVisitor))
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Kind, E> {
        Ok(Kind::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Kind, E> {
        Ok(match i64::try_from(u) {
            Ok(i) => Kind::Int(i),
            Err(_) => Kind::UInt(u),
        })
    }

    fn visit_f64<E>(self, f: f64) -> Result<Kind, E> {
        Ok(Kind::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Kind, E> {
        Ok(Kind::Str(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Kind, E> {
        Ok(Kind::Str(s))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Kind, E> {
        Err(E::custom(
            "binary scalars are not supported in workflow documents",
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Kind>>()? {
            items.push(node(item));
        }
        Ok(Kind::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Kind>>()?;
            let key = Node {
                range: range(&key.referenced),
                kind: Kind::Str(key.value),
            };
            entries.push((key, node(value)));
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(node: &Node) -> Vec<String> {
        match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .map(|(k, _)| k.as_str().unwrap().to_string())
                .collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn yaml_1_1_spellings_stay_strings() {
        let root = parse("on: yes\ny: no\nversion: 0.1.0\nmode: 0755\n").unwrap();
        assert_eq!(keys(&root), ["on", "y", "version", "mode"]);
        assert_eq!(
            root.to_json(),
            serde_json::json!({"on": "yes", "y": "no", "version": "0.1.0", "mode": "0755"})
        );
    }

    #[test]
    fn ranges_point_at_the_source() {
        let src = "document:\n  name: \"quoted\"\n";
        let root = parse(src).unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        let Kind::Map(inner) = &entries[0].1.kind else {
            panic!()
        };
        assert_eq!(&src[inner[0].0.range.clone()], "name");
        assert_eq!(&src[inner[0].1.range.clone()], "\"quoted\"");
    }

    #[test]
    fn duplicate_keys_are_kept_for_reporting() {
        assert_eq!(keys(&parse("a: 1\nb: 2\na: 3\n").unwrap()), ["a", "b", "a"]);
    }
}
