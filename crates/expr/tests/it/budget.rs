//! Expression budgets: every way we know to make an expression run away (endless
//! generators, huge collections, repeated strings, doubling, deep nesting, nested
//! iteration, quadratic searches) stops at its limit with an error naming it, in
//! bounded time, while honest expressions are untouched.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use expr::{Budget, Expr, Limit, Vars};
use serde_json::{Value, json};

/// Evaluates `text` on `null` under `budget`: the value, or the limit it went over
/// (`None` for an error that is not about the budget) and how long it took.
fn eval(text: &str, budget: Budget) -> (Result<Value, Option<Limit>>, Duration) {
    let e = Expr::compile(text, &[]).unwrap_or_else(|e| panic!("{text}: {}", e.message));
    let mut vars = Vars::new();
    vars.set_budget(budget);
    let started = Instant::now();
    let outcome = e
        .eval(&Value::Null, &vars)
        .map_err(|e| e.limit.map(|exceeded| exceeded.limit));
    (outcome, started.elapsed())
}

/// A budget small enough for an unoptimised test build to reach in well under a second.
fn small() -> Budget {
    Budget {
        steps: 200_000,
        bytes: 4 * 1024 * 1024,
        time: Duration::from_secs(2),
        offload: None,
    }
}

#[test]
fn runaway_expressions_stop_at_the_limit_they_go_over() {
    let cases: &[(&str, Limit)] = &[
        // The issue's own two.
        ("[limit(1000000000; repeat(1))] | length", Limit::Steps),
        ("[range(0; 100000000)] | length", Limit::Steps),
        // Looping without building anything.
        ("last(repeat(.))", Limit::Steps),
        ("[1] | until(false; .)", Limit::Steps),
        ("last(1 | while(true; .))", Limit::Steps),
        ("last(1 | recurse(.))", Limit::Steps),
        // One operation that would build a gigabyte.
        ("\"x\" * 1000000000", Limit::Bytes),
        ("\"x\" * (1e9 | floor)", Limit::Bytes),
        // Doubling: few steps, exponential size.
        ("\"x\" | until(length > 100000000; . + .)", Limit::Bytes),
        ("[1] | until(length > 100000000; . + .)", Limit::Bytes),
        // A huge object (each `+` copies the accumulator, which `reduce` still holds).
        (
            "reduce range(0; 10000000) as $i ({}; . + {($i | tostring): $i})",
            Limit::Bytes,
        ),
        // Nested iteration over a modest array: cubic.
        (
            "[range(1000)] as $a | [$a[] as $x | $a[] as $y | $a[] as $z | 1] | length",
            Limit::Steps,
        ),
        // Deep nesting, which would overflow a stack wherever it is dropped or walked.
        ("reduce range(100000) as $i (null; [.])", Limit::Depth),
        ("reduce range(100000) as $i (null; {a: .})", Limit::Depth),
        ("(\"[\" * 100000) | fromjson", Limit::Depth),
        // Searches whose cost is the product of two sizes.
        ("(\"a\" * 1000000) | indices(\"a\" * 500000)", Limit::Steps),
        (
            "[range(100000)] as $a | $a | indices($a[:50000])",
            Limit::Steps,
        ),
    ];
    for (text, limit) in cases {
        let (outcome, took) = eval(text, small());
        assert_eq!(outcome, Err(Some(*limit)), "{text}");
        assert!(took < Duration::from_secs(3), "{text} took {took:?}");
    }
}

#[test]
fn catching_the_error_does_not_escape_the_budget() {
    for text in [
        "try last(repeat(.)) catch 0",
        "[.[]?, (try (\"x\" * 1000000000) catch \"caught\")]",
        "first(repeat(.)?) // 1 | last(repeat(.))?",
    ] {
        let (outcome, _) = eval(text, small());
        assert!(matches!(outcome, Err(Some(_))), "{text}: {outcome:?}");
    }
}

#[test]
fn the_clock_stops_what_steps_alone_would_allow() {
    let budget = Budget {
        steps: u64::MAX,
        time: Duration::from_millis(100),
        ..small()
    };
    let (outcome, took) = eval("last(repeat(.))", budget);
    assert_eq!(outcome, Err(Some(Limit::Time)));
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn honest_expressions_fit_the_default_budget() {
    let cases: &[(&str, Value)] = &[
        (
            "[range(0; 100000)] | map(. * 2) | add",
            json!(9_999_900_000u64),
        ),
        (
            "[range(0; 20000) | {id: ., name: \"item \\(.)\"}] | group_by(.id % 10) | length",
            json!(10),
        ),
        (
            "[range(10000) | tostring] | join(\",\") | length",
            json!(48889),
        ),
        (
            "reduce range(100) as $i (null; [.]) | tojson | length",
            json!(204),
        ),
        ("\"ab\" * 3", json!("ababab")),
        (
            "try (\"ab\" * 1.5) catch \"not a count\"",
            json!("not a count"),
        ),
    ];
    for (text, expected) in cases {
        let (outcome, _) = eval(text, Budget::default());
        assert_eq!(outcome.as_ref(), Ok(expected), "{text}");
    }
}

static OFFLOADED: AtomicUsize = AtomicUsize::new(0);

fn count_and_run(work: &mut dyn FnMut()) {
    OFFLOADED.fetch_add(1, Ordering::SeqCst);
    work();
}

#[test]
fn only_expressions_that_outgrow_the_first_slice_are_offloaded() {
    let budget = Budget::default().with_offload(count_and_run);
    let (cheap, _) = eval("[range(100)] | add", budget);
    assert_eq!(cheap, Ok(json!(4950)));
    assert_eq!(
        OFFLOADED.load(Ordering::SeqCst),
        0,
        "a cheap expression ran in place"
    );

    let (large, _) = eval("[range(200000)] | add", budget);
    assert_eq!(large, Ok(json!(19_999_900_000u64)));
    assert_eq!(
        OFFLOADED.load(Ordering::SeqCst),
        1,
        "a large one ran again, offloaded"
    );

    let (runaway, _) = eval(
        "last(repeat(.))",
        Budget {
            steps: 1_000_000,
            ..budget
        },
    );
    assert_eq!(runaway, Err(Some(Limit::Steps)));
    assert_eq!(OFFLOADED.load(Ordering::SeqCst), 2);

    // Over what the whole budget allows already in the slice: no second run.
    for text in ["\"x\" * 1000000000", "reduce range(1000) as $i (null; [.])"] {
        let (refused, _) = eval(text, budget);
        assert!(matches!(refused, Err(Some(_))), "{text}");
    }
    assert_eq!(
        OFFLOADED.load(Ordering::SeqCst),
        2,
        "refused in the slice, not offloaded"
    );
}

#[test]
fn an_expression_over_budget_is_a_runtime_error_naming_the_limit() {
    let e = Expr::compile("\"x\" * 1000000000", &[]).unwrap();
    let mut vars = Vars::new();
    vars.set_budget(small());
    let problem = e
        .eval(&Value::Null, &vars)
        .unwrap_err()
        .into_problem("/do/0/big");
    assert_eq!(problem.type_, expr::types::RUNTIME);
    assert_eq!(problem.status, 413);
    let detail = problem.detail.unwrap();
    assert!(detail.contains("4194304 bytes"), "{detail}");
    assert!(detail.contains("expression-bytes"), "{detail}");
    assert!(detail.contains("\"x\" * 1000000000"), "{detail}");

    let e = Expr::compile("last(repeat(.))", &[]).unwrap();
    let problem = e
        .eval(&Value::Null, &vars)
        .unwrap_err()
        .into_problem("/do/0/loop");
    assert_eq!(problem.status, 400);
    assert!(problem.detail.unwrap().contains("200000 evaluation steps"));
}

#[test]
fn an_evaluation_inside_another_counts_against_the_one_under_way() {
    // Each inner evaluation alone is far within its budget; together they are not.
    let inner = Expr::compile("[range(0; 5000)] | length", &[]).unwrap();
    let budget = Budget {
        steps: 50_000,
        ..small()
    };
    let mut vars = Vars::new();
    vars.set_budget(budget);
    assert_eq!(inner.eval(&Value::Null, &vars).unwrap(), json!(5000));
    let outer = budget.run(|| {
        (0..100)
            .map(|_| inner.eval(&Value::Null, &vars))
            .collect::<Result<Vec<_>, _>>()
    });
    assert_eq!(outer.unwrap_err().limit, Limit::Steps);
}
