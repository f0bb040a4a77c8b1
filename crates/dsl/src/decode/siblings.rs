//! Zigflow documents with several workflows: when every top-level task of a Zigflow
//! document is a `do`, each is a workflow of its own, named by its key, and
//! `run.workflow` (with Zigflow's `type`) names one of them. skein runs the one the
//! document's `workflowType` names (or the first), and a `run.workflow` of a sibling
//! runs that sibling's tasks in its place, with the call's `input`.

use std::collections::HashMap;

use program::{Input, NamedTask, Process, Task, TaskKind, TaskList};

use super::Cx;
use crate::yaml::{Kind, Node};

/// The workflows of a document whose top-level tasks are all `do` tasks (at least
/// two), by name.
pub(crate) fn workflows(list: &TaskList) -> Option<HashMap<String, TaskList>> {
    if list.tasks.len() < 2
        || !list
            .tasks
            .iter()
            .all(|t| matches!(t.task.kind, TaskKind::Do(_)))
    {
        return None;
    }
    Some(
        list.tasks
            .iter()
            .map(|t| match &t.task.kind {
                TaskKind::Do(inner) => (t.name.clone(), inner.clone()),
                _ => unreachable!("checked above"),
            })
            .collect(),
    )
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
    let mut walk = Walk { cx, root, siblings };
    walk.task(&mut chosen, &mut stack);
    TaskList {
        tasks: vec![chosen],
    }
}

struct Walk<'a, 's, 'n> {
    cx: &'a mut Cx<'s>,
    root: &'n Node,
    siblings: &'a HashMap<String, TaskList>,
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
