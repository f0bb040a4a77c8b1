//! Compile and evaluation cases for runtime expressions, driven by tables.
//!
//! The evaluation table includes every expression shape that the conformance
//! kit's feature files use (`ctk/features` of the spec's data), each with the
//! input and result its scenario implies.

mod budget;

use expr::{Expr, Template, UriTemplate, Vars, strict_expression};
use serde_json::{Value, json};

/// Compiles `text` (strict `${ }` or bare) with `locals` in scope and evaluates
/// it on `input` with `vars`; returns the result or the error message.
fn run(text: &str, locals: &[&str], input: Value, vars: &[(&str, Value)]) -> Result<Value, String> {
    let jq = strict_expression(text).map_or(text, |(_, inner)| inner);
    let e = Expr::compile(jq, locals)
        .map_err(|e| format!("compile: {} at {:?}", e.message, e.range))?;
    let mut v = Vars::new();
    for (name, value) in vars {
        v.set(name, value);
    }
    e.eval(&input, &v).map_err(|e| e.message)
}

/// Variable bindings for an evaluation: name (without `$`) and value.
type Bindings = Vec<(&'static str, Value)>;
/// (expression, locals in scope, input, bindings, expected result)
type EvalCase = (
    &'static str,
    &'static [&'static str],
    Value,
    Bindings,
    Value,
);
/// (expression, locals, message fragment, byte range in the text, help fragment)
type CompileCase = (
    &'static str,
    &'static [&'static str],
    &'static str,
    std::ops::Range<usize>,
    &'static str,
);

#[test]
fn conformance_kit_expression_shapes() {
    let cases: Vec<EvalCase> = vec![
        // data-flow.feature: bare input.from and output.as.
        (
            ".user.claims.subject",
            &[],
            json!({"user": {"claims": {"subject": "6AsnRg"}}}),
            vec![],
            json!("6AsnRg"),
        ),
        ("${ . }", &[], json!("6AsnRg"), vec![], json!("6AsnRg")),
        (".id", &[], json!({"id": 1}), vec![], json!(1)),
        (
            "{ ids: [ $input, .id ] }",
            &[],
            json!({"id": 2}),
            vec![("input", json!(1))],
            json!({"ids": [1, 2]}),
        ),
        // call.feature
        (
            ".[0]",
            &[],
            json!([{"id": 7}, {"id": 8}]),
            vec![],
            json!({"id": 7}),
        ),
        (". | length", &[], json!([1, 2, 3]), vec![], json!(3)),
        (
            "${ .status }",
            &[],
            json!({"status": "available"}),
            vec![],
            json!("available"),
        ),
        (
            "${ .username }",
            &[],
            json!({"username": "u"}),
            vec![],
            json!("u"),
        ),
        // emit.feature: string interpolation.
        (
            r#"${ "Hello \(.user.firstName) \(.user.lastName)!" }"#,
            &[],
            json!({"user": {"firstName": "John", "lastName": "Doe"}}),
            vec![],
            json!("Hello John Doe!"),
        ),
        // for.feature: bare for.in (YAML's quotes are gone by now), a named item variable and the default index.
        (
            ".colors",
            &[],
            json!({"colors": ["red"]}),
            vec![],
            json!(["red"]),
        ),
        (
            "${ { colors: (.processed.colors + [ $color ]), indexes: (.processed.indexes + [ $index ])} }",
            &["color", "index"],
            json!({"processed": {"colors": ["red"], "indexes": [0]}}),
            vec![("color", json!("green")), ("index", json!(1))],
            json!({"colors": ["red", "green"], "indexes": [0, 1]}),
        ),
        // switch.feature: bare `when` conditions and appends to a missing array.
        (
            r#".color == "red""#,
            &[],
            json!({"color": "red"}),
            vec![],
            json!(true),
        ),
        (
            r#".color == "green""#,
            &[],
            json!({"color": "red"}),
            vec![],
            json!(false),
        ),
        (
            r#"${ .colors + [ "red" ] }"#,
            &[],
            json!({}),
            vec![],
            json!(["red"]),
        ),
        (
            "${ .colors + [ $input.color ] }",
            &[],
            json!({}),
            vec![("input", json!({"color": "yellow"}))],
            json!(["yellow"]),
        ),
        // branch.feature / do.feature: no spaces inside the brackets.
        (
            r#"${ .colors + ["blue"] }"#,
            &[],
            json!({"colors": ["red"]}),
            vec![],
            json!(["red", "blue"]),
        ),
        // try.feature: a custom catch variable.
        (
            "${ $err }",
            &["err"],
            json!(null),
            vec![("err", json!({"status": 404}))],
            json!({"status": 404}),
        ),
        // set.feature
        (
            "${ .configuration.size }",
            &[],
            json!({"configuration": {"size": {"width": 6}}}),
            vec![],
            json!({"width": 6}),
        ),
    ];
    for (text, locals, input, vars, expected) in cases {
        assert_eq!(run(text, locals, input, &vars), Ok(expected), "{text}");
    }
}

#[test]
fn the_examples_use_these_shapes_too() {
    let cases: Vec<(&str, Value, Bindings, Value)> = vec![
        (
            "${ $workflow.input[0] }",
            json!(null),
            vec![("workflow", json!({"input": [{"a": 1}]}))],
            json!({"a": 1}),
        ),
        (
            "$context.error == null",
            json!(null),
            vec![("context", json!({}))],
            json!(true),
        ),
        (
            "$context + { error: $error }",
            json!(null),
            vec![("context", json!({"a": 1})), ("error", json!("e"))],
            json!({"a": 1, "error": "e"}),
        ),
        (
            "( . | length ) > 3",
            json!([1, 2, 3, 4]),
            vec![],
            json!(true),
        ),
        (
            "${ .temperature > 38 }",
            json!({"temperature": 39}),
            vec![],
            json!(true),
        ),
        (
            "${ .bpm < 60 or .bpm > 100 }",
            json!({"bpm": 80}),
            vec![],
            json!(false),
        ),
        (
            r#"${ "https://petstore.swagger.io/v2/pet/\(.petId)" }"#,
            json!({"petId": 3}),
            vec![],
            json!("https://petstore.swagger.io/v2/pet/3"),
        ),
        (
            r#"${ . + { status: "sold" } }"#,
            json!({"id": 1}),
            vec![],
            json!({"id": 1, "status": "sold"}),
        ),
        (
            r#"($task.with.endpoint != null and ($task.with.endpoint | startswith("https://mocked.service.com")))"#,
            json!(null),
            vec![(
                "task",
                json!({"with": {"endpoint": "https://mocked.service.com/x"}}),
            )],
            json!(true),
        ),
    ];
    for (text, input, vars, expected) in cases {
        let locals: &[&str] = if text.contains("$error") {
            &["error"]
        } else {
            &[]
        };
        assert_eq!(run(text, locals, input, &vars), Ok(expected), "{text}");
    }
}

#[test]
fn evaluation_semantics() {
    // No output is null; two outputs are an error that says what to do.
    assert_eq!(run("empty", &[], json!(1), &[]), Ok(Value::Null));
    let err = run(".[]", &[], json!([1, 2]), &[]).unwrap_err();
    assert!(err.contains("more than one value"), "{err}");
    // A runtime error carries jaq's message.
    let err = run(".a.b", &[], json!({"a": 1}), &[]).unwrap_err();
    assert!(err.contains("cannot index"), "{err}");
    // Unbound declared variables are null.
    assert_eq!(run("$secrets", &[], json!(1), &[]), Ok(Value::Null));
    // Inner bindings shadow outer ones.
    assert_eq!(
        run(
            "$item",
            &["item"],
            json!(null),
            &[("item", json!(1)), ("item", json!(2))]
        ),
        Ok(json!(2))
    );
    // The engine's environment is not reachable; halt does not stop the process.
    assert_eq!(run("env", &[], json!(null), &[]), Ok(json!({})));
    assert!(
        run("halt", &[], json!(null), &[])
            .unwrap_err()
            .contains("halt")
    );
    // Integers stay integers; large and fractional numbers survive.
    assert_eq!(run(". + 1", &[], json!(41), &[]), Ok(json!(42)));
    assert_eq!(run(". * 2", &[], json!(1.25), &[]), Ok(json!(2.5)));
    assert_eq!(run(".", &[], json!(u64::MAX), &[]), Ok(json!(u64::MAX)));
    // Deeply nested results are refused instead of endangering the stack later.
    let err = run("reduce range(300) as $i (null; [.])", &[], json!(null), &[]).unwrap_err();
    assert!(err.contains("deeper than 256"), "{err}");
    // Conditions use jq truthiness.
    let e = Expr::compile(".", &[]).unwrap();
    assert!(!e.eval_bool(&Value::Null, &Vars::new()).unwrap());
    assert!(e.eval_bool(&json!(0), &Vars::new()).unwrap());
}

#[test]
fn variables_reach_the_right_slots() {
    let e = Expr::compile(
        "[$input, $output, $context, $secrets, $task, $workflow, $runtime, $authorization, $a, $b]",
        &["a", "b"],
    )
    .unwrap();
    let values: Vec<Value> = (0..10).map(|i| json!(i)).collect();
    let names = [
        "input",
        "output",
        "context",
        "secrets",
        "task",
        "workflow",
        "runtime",
        "authorization",
        "a",
        "b",
    ];
    let mut vars = Vars::new();
    for (n, v) in names.iter().zip(&values) {
        vars.set(n, v);
    }
    assert_eq!(
        e.eval(&Value::Null, &vars).unwrap(),
        json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    );
}

#[test]
fn compile_errors_say_what_and_where() {
    let cases: &[CompileCase] = &[
        (
            ".a + ",
            &[],
            "expected term, found the end of the expression",
            5..5,
            "",
        ),
        ("[1, 2", &[], "expected closing bracket", 5..5, ""),
        (
            ".a | $iput.x",
            &[],
            "undefined variable `$iput`",
            5..10,
            "did you mean `$input`?",
        ),
        (
            "$colr",
            &["color"],
            "undefined variable `$colr`",
            0..5,
            "did you mean `$color`?",
        ),
        (
            "$zzz",
            &[],
            "undefined variable `$zzz`",
            0..4,
            "the variables here are $input",
        ),
        (
            ".a | lenght",
            &[],
            "undefined function `lenght/0`",
            5..11,
            "did you mean `length`?",
        ),
        (
            ".x | tostrin",
            &[],
            "undefined function `tostrin/0`",
            5..12,
            "did you mean `tostring`?",
        ),
        ("def f: 1 + f; f", &[], "`def`", 0..3, "recursive"),
        ("$__loc__", &[], "undefined variable", 0..8, ""),
    ];
    for (text, locals, message, range, help) in cases {
        let err = Expr::compile(text, locals).expect_err(text);
        assert!(err.message.contains(message), "{text}: {}", err.message);
        assert_eq!(&err.range, range, "{text}: {}", err.message);
        let got_help = err.help.unwrap_or_default();
        assert!(got_help.contains(help), "{text}: help was {got_help:?}");
    }
}

#[test]
fn hostile_expressions_are_refused_before_jaq_sees_them() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        Expr::compile(&deep, &[])
            .unwrap_err()
            .message
            .contains("nests deeper")
    );
    let chain = format!("1{}", "+1".repeat(50_000));
    assert!(
        Expr::compile(&chain, &[])
            .unwrap_err()
            .message
            .contains("tokens")
    );
}

#[test]
fn templates_evaluate_their_expressions_and_keep_constants() {
    let input = json!({"size": 6});
    let t = Template::object(vec![
        ("shape".into(), Template::Const(json!("circle"))),
        (
            "size".into(),
            Template::Expr(Expr::compile(".size", &[]).unwrap()),
        ),
        (
            "list".into(),
            Template::array(vec![Template::Const(json!(1))]),
        ),
    ]);
    assert!(t.as_const().is_none());
    assert_eq!(
        t.eval(&input, &Vars::new()).unwrap(),
        json!({"shape": "circle", "size": 6, "list": [1]})
    );
    let folded = Template::object(vec![("a".into(), Template::Const(json!(1)))]);
    assert_eq!(folded.as_const(), Some(&json!({"a": 1})));
    let loose = Template::Loose(
        Expr::compile(".missing.deeper", &[]).unwrap(),
        "text".into(),
    );
    assert_eq!(
        loose.eval(&json!({"missing": 1}), &Vars::new()).unwrap(),
        json!("text")
    );
}

#[test]
fn uri_templates_from_the_conformance_kit() {
    let t = UriTemplate::parse("https://petstore.swagger.io/v2/pet/findByStatus?status={status}")
        .unwrap();
    assert_eq!(
        t.expand(&json!({"status": "available"})).unwrap(),
        "https://petstore.swagger.io/v2/pet/findByStatus?status=available"
    );
    let t = UriTemplate::parse("https://httpbin.org/basic-auth/{username}/{password}").unwrap();
    assert_eq!(
        t.expand(&json!({"username": "serverless-workflow", "password": "conformance-test"}))
            .unwrap(),
        "https://httpbin.org/basic-auth/serverless-workflow/conformance-test"
    );
}

#[test]
fn an_eval_error_becomes_the_dsl_expression_error() {
    let e = Expr::compile(".a.b", &[]).unwrap();
    let problem = e
        .eval(&json!({"a": 1}), &Vars::new())
        .unwrap_err()
        .into_problem("/do/0/setX");
    assert_eq!(problem.type_, expr::types::EXPRESSION);
    assert_eq!(problem.status, 400);
    assert_eq!(problem.instance.as_deref(), Some("/do/0/setX"));
    assert_eq!(
        problem.detail.as_deref(),
        Some("cannot index 1 with \"b\" (in `.a.b`)")
    );
}

#[test]
fn compiled_expressions_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Expr>();
    shareable::<Template>();
}

/// Each expression is compiled with only the standard-library definitions it
/// reaches; these reach others transitively or through syntax.
#[test]
fn standard_library_definitions_reached_indirectly_still_work() {
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "with_entries(.value += 1)",
            json!({"a": 1}),
            json!({"a": 2}),
        ),
        (
            "to_entries | from_entries",
            json!({"a": 1}),
            json!({"a": 1}),
        ),
        ("[paths]", json!({"a": [1]}), json!([["a"], ["a", 0]])),
        ("[..] | length", json!({"a": [1]}), json!(3)),
        (
            "walk(if type == \"number\" then . * 10 else . end)",
            json!([1, [2]]),
            json!([10, [20]]),
        ),
        ("@base64", json!("hi"), json!("aGk=")),
        ("@base64 \"x\\(.)\"", json!("hi"), json!("xaGk=")),
        ("[limit(2; .[])]", json!([1, 2, 3]), json!([1, 2])),
        (".[] |= . + 1", json!([1, 2]), json!([2, 3])),
        ("del(.a) | keys", json!({"a": 1, "b": 2}), json!(["b"])),
        (
            "[.[] | select(test(\"^a\"))]",
            json!(["ab", "ba"]),
            json!(["ab"]),
        ),
        (
            "ascii_downcase | ltrimstr(\"x\")",
            json!("XAB"),
            json!("ab"),
        ),
        ("[splits(\", \")]", json!("a, b"), json!(["a", "b"])),
        ("getpath([\"a\", \"b\"])", json!({"a": {"b": 5}}), json!(5)),
        ("tojson | fromjson | .a[1]", json!({"a": [1, 2]}), json!(2)),
        ("map(select(. > 1)) | add", json!([1, 2, 3]), json!(5)),
        ("min_by(.n).n", json!([{"n": 2}, {"n": 1}]), json!(1)),
        (
            "group_by(.k) | map(length)",
            json!([{"k": 1}, {"k": 2}, {"k": 1}]),
            json!([2, 1]),
        ),
        ("[range(3)] | join(\",\")", json!(null), json!("0,1,2")),
        ("todate", json!(0), json!("1970-01-01T00:00:00Z")),
    ];
    for (text, input, expected) in cases {
        assert_eq!(run(text, &[], input, &[]), Ok(expected), "{text}");
    }
}

#[test]
fn interpolated_strings_give_what_jq_gives() {
    // Each expression is evaluated as written (a string with simple interpolations,
    // which skips jq where it can) and behind `| .` (which always runs jq).
    let expressions = [
        r#""http://h/items/\($item)""#,
        r#""\(.name)-\($item)/\(.missing)""#,
        r#""a\"b\\c\/d\te\n\($item)""#,
        r#""(\( $item ))""#,
    ];
    let values = [
        json!("plain"),
        json!("needs \"quotes\" and \\ and é"),
        json!(0),
        json!(-17),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!(1e300),
        json!(true),
        json!(null),
        json!([1, "two"]),
        json!({"k": [1]}),
    ];
    let inputs = [
        json!({"name": "n"}),
        json!({"name": 3}),
        json!(null),
        json!(7),
        json!("s"),
    ];
    for text in expressions {
        for value in &values {
            for input in &inputs {
                let vars = [("item", value.clone())];
                let fast = run(text, &["item"], input.clone(), &vars);
                let jq = run(&format!("{text} | ."), &["item"], input.clone(), &vars);
                assert_eq!(fast, jq, "{text} with $item = {value} on {input}");
            }
        }
    }
}
