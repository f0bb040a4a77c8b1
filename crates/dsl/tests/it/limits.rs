//! Hostile and degenerate input: each gets a clear error, never a panic.

use super::parse;

fn only_error(source: &str) -> dsl::Diagnostic {
    let parsed = parse(source);
    assert!(parsed.workflow.is_none());
    assert_eq!(parsed.diagnostics.len(), 1, "{:#?}", parsed.diagnostics);
    parsed.diagnostics.into_iter().next().unwrap()
}

#[test]
fn malformed_yaml_says_where() {
    let d = only_error("document:\n  dsl: '1.0.3'\ndo:\n  - a:\n      set: {x: 1\n  - b: 2\n");
    let source = "document:\n  dsl: '1.0.3'\ndo:\n  - a:\n      set: {x: 1\n  - b: 2\n";
    assert_eq!(
        dsl::LineIndex::new(source)
            .line_col(source, d.range.start)
            .0,
        6
    );
    assert!(d.message.contains("flow mapping"), "{}", d.message);
    assert!(
        !d.message.contains(" at line "),
        "the position is not repeated in the text: {}",
        d.message
    );
}

#[test]
fn empty_and_comment_only_documents() {
    for source in ["", "   \n", "# just a comment\n"] {
        let d = only_error(source);
        assert_eq!(d.message, "the document is empty", "{source:?}");
        assert_eq!(
            d.help.as_deref(),
            Some("a workflow needs at least `document` and `do`")
        );
    }
}

#[test]
fn a_scalar_or_a_list_is_not_a_workflow() {
    assert_eq!(
        only_error("just text\n").message,
        "the document must be a mapping, found a string"
    );
    assert_eq!(
        only_error("- a\n- b\n").message,
        "the document must be a mapping, found a list"
    );
}

#[test]
fn binary_and_non_utf8_files() {
    let options = dsl::Options::default();
    let binary: Vec<u8> = (0..=255u8).collect();
    let d = dsl::text(&binary, &options).unwrap_err();
    assert!(d.message.contains("binary file"), "{}", d.message);
    let latin1 = b"document:\n  name: caf\xe9\n";
    let d = dsl::text(latin1, &options).unwrap_err();
    assert_eq!(
        d.message,
        "this file is not UTF-8 text: invalid byte at line 2, column 12 (offset 21)"
    );
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let big = vec![b'#'; 100 << 20];
    let d = dsl::text(&big, &dsl::Options::default()).unwrap_err();
    assert_eq!(
        d.message,
        "the document is 100.0 MiB, larger than the 4.0 MiB limit for a workflow definition"
    );
    let small = dsl::Options {
        max_bytes: 10,
        ..Default::default()
    };
    assert!(
        dsl::parse("document: {}\ndo: []\n", &small).diagnostics[0]
            .message
            .contains("larger than the 10 bytes limit")
    );
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    let bomb = std::fs::read_to_string(super::data_dir("hostile").join("alias-bomb.yaml")).unwrap();
    let d = only_error(&bomb);
    assert!(
        d.message.contains("250000 nodes") || d.message.contains("alias"),
        "{}",
        d.message
    );

    let deep = format!("do: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let d = only_error(&deep);
    assert!(
        d.message.contains("recursion limit") || d.message.contains("deeper"),
        "{}",
        d.message
    );

    let mut block = String::new();
    for i in 0..200 {
        block += &format!("{}k:\n", "  ".repeat(i));
    }
    assert!(
        only_error(&block)
            .message
            .contains("nests deeper than 128 levels")
    );
}

#[test]
fn several_yaml_documents_in_one_file() {
    let d = only_error("document: {}\n---\ndocument: {}\n");
    assert!(
        d.message.to_lowercase().contains("document"),
        "{}",
        d.message
    );
}

#[test]
fn huge_expressions_are_refused_without_crashing() {
    let header = "document: {dsl: '1.0.3', namespace: t, name: t, version: '1.0.0'}\ndo:\n  - a:\n      set: ";
    let deep = format!(
        "{header}'${{ {}1{} }}'\n",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let parsed = parse(&deep);
    assert!(parsed.workflow.is_none());
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("nests deeper than 64"),
        "{}",
        parsed.diagnostics[0].message
    );
    let long = format!("{header}'${{ 1{} }}'\n", "+1".repeat(100_000));
    let parsed = parse(&long);
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("longer than 1000 tokens")
    );
}

#[test]
fn json_documents_are_read_too() {
    let json = "{\n\t\"document\": {\"dsl\": \"1.0.3\", \"namespace\": \"t\", \"name\": \"j\", \"version\": \"1.0.0\"},\n\t\"do\": [{\"a\": {\"set\": {\"x\": \"${ 1 + 1 }\"}}}],\n\t\"tiemout\": 1\n}\n";
    let parsed = parse(json);
    assert_eq!(parsed.diagnostics.len(), 1);
    let d = &parsed.diagnostics[0];
    assert_eq!(
        dsl::LineIndex::new(json).line_col(json, d.range.start),
        (4, 2)
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `timeout`?"));
}
