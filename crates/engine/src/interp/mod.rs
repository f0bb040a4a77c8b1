//! The interpreter: runs an execution from its definition and its journal, replaying
//! what the journal holds and running the rest.
//!
//! One concern per file:
//! - here: the state that travels along a path of execution ([`Ctx`]) and the per-task
//!   context ([`TaskCx`]);
//! - `workflow`: a run's start and end (workflow input, timeout and output, the final
//!   status and event, pauses) and what a dropped run records;
//! - `task`: task lists, the data flow around each task, and dispatch on its kind;
//! - `fanout`: `for` (with the `for.concurrency` bound) and `fork`;
//! - `retry`: `try`/`catch`, retry policies and their backoff;
//! - `timers`: durable timers, `wait`, task and workflow timeouts;
//! - `process`: `run.shell`, `run.script` and `run.container`;
//! - `subflow`: `run.workflow`, child executions;
//! - `events`: `emit`, and `listen` with its `foreach` (the inbox itself in `listen`);
//! - `http`: `call: http` and `call: openapi`, with authentication;
//! - `grpc`: `call: grpc`, and the DSL errors of gRPC status codes;
//! - `mcp`: `call: mcp`;
//! - `a2a`: `call: a2a`, with streamed results as events;
//! - `asyncapi`: `call: asyncapi`, publishing and durable subscriptions;
//! - `catalog`: cataloged and remote functions, their definitions journaled;
//! - `data`: evaluating expressions and templates, schemas, the errors they raise.

mod a2a;
mod asyncapi;
mod catalog;
mod data;
mod digest;
mod events;
mod fanout;
mod grpc;
pub(crate) mod http;
pub(crate) mod listen;
mod mcp;
pub(crate) mod messages;
mod process;
mod retry;
mod subflow;
mod task;
mod timers;
mod workflow;

use std::sync::Arc;

use expr::Template;
use program::{FlowDirective, NamedTask};
use serde_json::Value;
use store::Ticket;

use crate::Interrupt;
use crate::run::{Run, Scope};

pub(crate) use data::{eval, plain_string, text};
pub(crate) use workflow::execute_detachable;
use workflow::{Detaching, Unfinished, execute};

type Res<T> = Result<T, Interrupt>;

/// What travels along one path of execution: `$context`, a count of its changes (so
/// a task records the context only when it changed), and the path's causal ticket:
/// the last journal write this path's data depends on.
pub(crate) struct Ctx {
    value: Value,
    changes: u64,
    causal: Ticket,
    /// Inside the list of a `try` whose catch starts from where the fault came
    /// (`Try::catch_from_fault`): each list keeps its task's input until it is done.
    keep_fault_input: bool,
    /// The input of the task that faulted, in the outermost list that kept one.
    fault_input: Option<Value>,
    /// Zigflow's `$data` (`Program::accumulates_data`), as the tasks so far left it.
    data: Option<Value>,
    /// Running the `before` or `after` list of an extension: its tasks are not extended.
    extending: bool,
}

impl Ctx {
    fn set(&mut self, value: Value) {
        self.value = value;
        self.changes += 1;
    }

    fn advance(&mut self, ticket: Ticket) {
        self.causal = self.causal.max(ticket);
    }

    /// A copy for a concurrent branch.
    fn branch(&self) -> Ctx {
        Ctx {
            value: self.value.clone(),
            changes: 0,
            causal: self.causal,
            keep_fault_input: false,
            fault_input: None,
            data: self.data.clone(),
            extending: self.extending,
        }
    }

    /// Takes the contexts of finished branches in order: the last that changed wins;
    /// the causal history is all of theirs.
    fn join(&mut self, branches: impl IntoIterator<Item = Ctx>) {
        for b in branches {
            self.advance(b.causal);
            if b.changes > 0 {
                self.set(b.value);
            }
        }
    }
}

/// Where a list ended: at its last task (or an `exit`), at an `end` for the whole
/// workflow, or at a `break` or next-iteration directive for the innermost loop.
enum Flow {
    Done(Value),
    /// Left by an `exit` directive: the list is done, as with `Done`; an extension's
    /// `before` list that exits stands for the task it extends.
    Exit(Value),
    End(Value),
    Break(Value),
    NextIteration(Value),
}

impl Flow {
    fn value(self) -> Value {
        match self {
            Flow::Done(v)
            | Flow::Exit(v)
            | Flow::End(v)
            | Flow::Break(v)
            | Flow::NextIteration(v) => v,
        }
    }
}

/// A finished task: its output and where the flow goes next.
struct Stepped {
    output: Value,
    then: FlowDirective,
}

/// One task's place in a run: what every part of running it reads and nothing in it
/// changes. What does change along the way (`$context`, the causal ticket) is the
/// path's [`Ctx`], passed beside it.
#[derive(Clone, Copy)]
struct TaskCx<'a> {
    run: &'a Arc<Run>,
    task: &'a NamedTask,
    /// The task's step key: its position, with iteration, visit and attempt marks.
    key: &'a str,
    /// Loop and catch variables in scope.
    scope: &'a Scope,
    /// `$task`, or null when no expression of the task reads it.
    task_var: &'a Value,
}

impl<'a> TaskCx<'a> {
    /// The task's reference (its JSON pointer), the `instance` of the errors it raises.
    fn at(&self) -> &'a str {
        &self.task.reference
    }

    /// The variables the task's expressions see, on `input` in `context`.
    fn vars<'v>(&self, context: &'v Value, input: &'v Value) -> expr::Vars<'v>
    where
        'a: 'v,
    {
        self.run
            .vars(self.scope, context, input, self.task_var, None)
    }

    /// The variables of an `export.as`: those of [`TaskCx::vars`] and `$output`.
    fn export_vars<'v>(
        &self,
        context: &'v Value,
        input: &'v Value,
        output: &'v Value,
    ) -> expr::Vars<'v>
    where
        'a: 'v,
    {
        self.run
            .vars(self.scope, context, input, self.task_var, Some(output))
    }

    /// Evaluates one of the task's templates on `input`.
    fn eval(&self, template: &Template, input: &Value, context: &Value) -> Res<Value> {
        eval(template, input, &self.vars(context, input), self.at())
    }

    /// The same task, with more variables in scope.
    fn within(&self, scope: &'a Scope) -> TaskCx<'a> {
        TaskCx { scope, ..*self }
    }
}
