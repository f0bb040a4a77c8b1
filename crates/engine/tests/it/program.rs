//! The engine runs programs, not syntax: a toy front-end with an expression language
//! of its own lowers its documents into the same program the DSL's do, and the
//! journal, step keys and events come out as they would for the DSL.

use std::sync::Arc;

use engine::Frontend;
use expect_test::expect;
use expr::{EvalError, Expr, Expression, Template, Vars};
use program::{FlowDirective, NamedTask, Program, Task, TaskKind};
use serde_json::{Value, json};

use crate::trace::Case;

/// `field!`: the workflow input's `field`, in capitals; `field?`: that field, which must
/// be a boolean, as a condition. It reads the workflow's input through the variables
/// the engine passes every expression (`$workflow` in jq).
struct Shout(String);

impl Expression for Shout {
    fn text(&self) -> &str {
        &self.0
    }

    fn origin(&self) -> &str {
        ""
    }

    fn eval(&self, _input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError> {
        let field = self.0.trim_end_matches('!');
        match self.read(vars, field).as_str() {
            Some(text) => Ok(json!(text.to_uppercase())),
            None => Err(self.error(format!("`{field}` is not a string"))),
        }
    }

    /// Only a boolean is a condition, as in Cloud Workflows.
    fn eval_bool(&self, _input: &Value, vars: &Vars<'_>) -> Result<bool, EvalError> {
        let field = self.0.trim_end_matches('?');
        self.read(vars, field)
            .as_bool()
            .ok_or_else(|| self.error(format!("`{field}` is not a boolean")))
    }
}

impl Shout {
    fn expr(text: &str) -> Expr {
        Expr::new(Arc::new(Shout(text.into())))
    }

    fn read<'v>(&self, vars: &Vars<'v>, field: &str) -> &'v Value {
        &vars.get("workflow").expect("the engine passes $workflow")["input"][field]
    }

    fn error(&self, message: String) -> EvalError {
        EvalError {
            message,
            expression: self.0.clone(),
            origin: String::new(),
            limit: None,
            data: None,
        }
    }
}

/// One step per line, `name: field! if flag?`: set `{name: <field in capitals>}` when
/// the workflow input's `flag` is true.
struct Toy;

impl Frontend for Toy {
    fn lower(&self, definition: &str) -> Result<Program, String> {
        // The document's identity and defaults, from a DSL skeleton; its one task goes.
        let skeleton = "document: {dsl: '1.0.3', namespace: toy, name: shouts, version: '1.0.0'}
do:
  - placeholder: { set: { x: 1 } }
";
        let mut program = dsl::parse(skeleton, &dsl::Options::default())
            .workflow
            .expect("the skeleton is a workflow");
        program.do_.tasks.clear();
        for (i, line) in definition.lines().enumerate() {
            let (name, rest) = line.split_once(": ").ok_or("a line without `: `")?;
            let (value, flag) = rest.split_once(" if ").ok_or("a line without ` if `")?;
            program.do_.tasks.push(NamedTask {
                name: name.into(),
                reference: format!("/lines/{i}"),
                task: Task {
                    if_: Some(Shout::expr(flag)),
                    input: None,
                    output: None,
                    export: None,
                    timeout: None,
                    then: FlowDirective::Continue,
                    metadata: Default::default(),
                    kind: TaskKind::Set(Template::object(vec![(
                        name.into(),
                        Template::Expr(Shout::expr(value)),
                    )])),
                    reads_task: false,
                },
            });
        }
        Ok(program)
    }
}

#[tokio::test]
async fn a_program_from_another_front_end_runs_with_its_own_expressions() {
    Case::new("hello: name! if loud?\nquiet: name! if never?")
        .frontend(Arc::new(Toy))
        .input(json!({"name": "ada", "loud": true, "never": false}))
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /lines/0
              +0ms task.started /lines/0
              +0ms task.completed /lines/0 output={"hello":"ADA"}
              +0ms task.created /lines/1
              +0ms task.started /lines/1
              +0ms task.completed /lines/1 output={"hello":"ADA"}
              +0ms workflow.completed output={"hello":"ADA"}
            journal:
              /do/0/hello completed {"hello":"ADA"}
              /do/1/quiet completed {"hello":"ADA"}
              /input completed {"name":"ada","loud":true,"never":false}
            outcome: completed {"hello":"ADA"}
        "#]])
        .await;
}

#[tokio::test]
async fn its_expression_errors_fault_the_task_as_the_dsl_would() {
    Case::new("hello: name! if loud?")
        .frontend(Arc::new(Toy))
        .input(json!({"name": "ada", "loud": "yes"}))
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /lines/0
              +0ms task.started /lines/0
              +0ms task.faulted /lines/0 error="expression"
              +0ms workflow.faulted error="expression"
            journal:
              /do/0/hello faulted expression
              /input completed {"name":"ada","loud":"yes"}
            outcome: faulted expression 400 at /lines/0 (`loud` is not a boolean (in `loud?`))
        "#]])
        .await;
}
