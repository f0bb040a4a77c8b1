//! Zigflow documents with several workflows. A `do` task at the top of a Zigflow
//! document is also a workflow of its own, named by its key, that `run.workflow` (with
//! Zigflow's `type`) can name; a `run.workflow` of one runs its tasks in place, with
//! the call's `input`. When every top-level task is a `do`, the document holds only
//! workflows: skein runs the one its `workflowType` names (or the first). Otherwise
//! the document's own list runs, and, as in Zigflow, a `do` that comes after its first
//! other task is a definition only, run through `run.workflow` (or a `then`).

use std::collections::HashMap;

use program::{FlowDirective, Input, NamedTask, Process, Task, TaskKind, TaskList};

use super::Cx;
use crate::yaml::{Kind, Node};

/// The workflows a document's top-level `do` tasks define, by name.
pub(crate) fn workflows(list: &TaskList) -> HashMap<String, TaskList> {
    list.tasks
        .iter()
        .filter_map(|t| match &t.task.kind {
            TaskKind::Do(inner) => Some((t.name.clone(), inner.clone())),
            _ => None,
        })
        .collect()
}

/// Whether every top-level task is a `do` (two or more): a document of workflows only.
pub(crate) fn only_workflows(list: &TaskList) -> bool {
    list.tasks.len() >= 2
        && list
            .tasks
            .iter()
            .all(|t| matches!(t.task.kind, TaskKind::Do(_)))
}

/// The document's own list when it has other tasks too: the `do` tasks after the first
/// other one are left out (unless a `then` goes to one), each with a warning; every
/// `run.workflow` of a sibling is expanded.
pub(crate) fn own(
    cx: &mut Cx,
    root: &Node,
    list: TaskList,
    siblings: &HashMap<String, TaskList>,
) -> TaskList {
    let targets: Vec<String> = list
        .tasks
        .iter()
        .flat_map(|t| {
            let mut out = Vec::new();
            if let FlowDirective::Goto(name) = &t.task.then {
                out.push(name.clone());
            }
            if let TaskKind::Switch(switch) = &t.task.kind {
                for case in &switch.cases {
                    if let FlowDirective::Goto(name) = &case.then {
                        out.push(name.clone());
                    }
                }
            }
            out
        })
        .collect();
    let mut seen_other = false;
    let mut kept = Vec::new();
    let mut definitions = Vec::new();
    for nt in list.tasks {
        let is_do = matches!(nt.task.kind, TaskKind::Do(_));
        if is_do && seen_other && !targets.contains(&nt.name) {
            definitions.push(nt);
            continue;
        }
        seen_other |= !is_do;
        kept.push(nt);
    }
    let mut walk = Walk {
        cx,
        root,
        siblings,
        called: Vec::new(),
    };
    let mut own = TaskList { tasks: kept };
    walk.list(&mut own, &mut Vec::new());
    let called = walk.called;
    for nt in definitions.iter().filter(|d| !called.contains(&d.name)) {
        let range = key_range(root, &nt.reference).unwrap_or(0..0);
        cx.warning(
            range,
            &super::Ptr(nt.reference.clone()),
            format!(
                "task `{}` is a `do` after other tasks, which Zigflow takes as the definition \
                 of a workflow, and nothing runs it",
                nt.name
            ),
            "move it before the other tasks to run it in the list, or call it with \
             `run.workflow: {type: …}`",
        );
    }
    own
}

/// The program's task list for a document of several workflows: the entry workflow
/// (`entry` if a top-level task has that name, else the first), with `run.workflow`
/// of a sibling expanded in place.
pub(crate) fn entry(
    cx: &mut Cx,
    root: &Node,
    list: TaskList,
    siblings: &HashMap<String, TaskList>,
    entry: &str,
) -> TaskList {
    let mut chosen = list
        .tasks
        .iter()
        .find(|t| t.name == entry)
        .unwrap_or(&list.tasks[0])
        .clone();
    let mut stack = vec![chosen.name.clone()];
    let mut walk = Walk {
        cx,
        root,
        siblings,
        called: Vec::new(),
    };
    walk.task(&mut chosen, &mut stack);
    TaskList {
        tasks: vec![chosen],
    }
}

struct Walk<'a, 's, 'n> {
    cx: &'a mut Cx<'s>,
    root: &'n Node,
    siblings: &'a HashMap<String, TaskList>,
    /// The workflows some `run.workflow` ran.
    called: Vec<String>,
}

impl Walk<'_, '_, '_> {
    fn list(&mut self, list: &mut TaskList, stack: &mut Vec<String>) {
        for nt in &mut list.tasks {
            self.task(nt, stack);
        }
    }

    fn task(&mut self, nt: &mut NamedTask, stack: &mut Vec<String>) {
        let siblings = self.siblings;
        let called = match &nt.task.kind {
            TaskKind::Run(run) => match &run.process {
                Process::Workflow(sub) if siblings.contains_key(&sub.name) => {
                    Some((sub.name.clone(), sub.input.clone()))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((name, input)) = called {
            if stack.contains(&name) {
                let range = key_range(self.root, &nt.reference).unwrap_or(0..0);
                self.cx.error_help(
                    range,
                    &super::Ptr(nt.reference.clone()),
                    format!(
                        "task `{}` runs the workflow `{name}`, which is already running it: \
                     skein runs a document's own workflows in place, so they cannot recurse",
                        nt.name
                    ),
                    "deploy the workflow on its own and run it by name to recurse",
                );
                return;
            }
            let mut body = siblings[&name].clone();
            self.called.push(name.clone());
            stack.push(name);
            self.list(&mut body, stack);
            stack.pop();
            let task: &mut Task = &mut nt.task;
            task.kind = TaskKind::Do(body);
            if task.input.is_none() && input.is_some() {
                task.input = Some(Input {
                    schema: None,
                    from: input,
                });
            }
            return;
        }
        match &mut nt.task.kind {
            TaskKind::Do(list) => self.list(list, stack),
            TaskKind::For(f) => self.list(&mut f.do_, stack),
            TaskKind::Fork(f) => self.list(&mut f.branches, stack),
            TaskKind::Try(t) => {
                self.list(&mut t.try_, stack);
                if let Some(list) = &mut t.catch.do_ {
                    self.list(list, stack);
                }
            }
            TaskKind::Listen(l) => {
                if let Some(list) = l.foreach.as_mut().and_then(|f| f.do_.as_mut()) {
                    self.list(list, stack);
                }
            }
            _ => {}
        }
    }
}

/// The source range of the key a JSON pointer ends at (a task's name).
fn key_range(root: &Node, pointer: &str) -> Option<std::ops::Range<usize>> {
    let mut node = root;
    let mut range = None;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        match &node.kind {
            Kind::Map(entries) => {
                let (k, v) = entries.iter().find(|(k, _)| k.as_str() == Some(&segment))?;
                range = Some(k.range.clone());
                node = v;
            }
            Kind::Seq(items) => {
                node = items.get(segment.parse::<usize>().ok()?)?;
                range = Some(node.range.clone());
            }
            _ => return None,
        }
    }
    range
}
