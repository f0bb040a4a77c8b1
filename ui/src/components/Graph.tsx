// The workflow drawn as nested blocks: tasks top to bottom in the order they run, the
// lists inside a task (a loop's body, a try and its catch) below it, a fork's branches
// side by side, a switch's cases and every jump named. Each block is coloured by what
// the execution's events say of its task, and counts its attempts.

import type { Model, TaskState } from "../model";

export interface GraphNode {
  id: string;
  name: string;
  kind: string;
  detail?: string;
  then?: string;
  cases?: { name: string; when?: string; then: string }[];
  branches?: { label: string; tasks: GraphNode[] }[];
}

export interface GraphData {
  syntax: string;
  name: string;
  title?: string;
  summary?: string;
  tasks: GraphNode[];
  functions?: { label: string; tasks: GraphNode[] }[];
  messages?: { kind: string; name: string }[];
  inputSchema?: any;
}

function stateOf(s: TaskState | undefined): string {
  if (!s) return "idle";
  const open = s.started - s.completed - s.faulted - s.cancelled;
  if (open > 0) return s.last === "retrying" ? "retrying" : "running";
  return s.last;
}

function counts(s: TaskState | undefined): string {
  if (!s || s.started === 0) return "";
  const parts = [];
  if (s.started > 1) parts.push(`${s.completed}/${s.started} done`);
  if (s.faulted) parts.push(`${s.faulted} faulted`);
  if (s.retried) parts.push(`${s.retried} ${s.retried === 1 ? "retry" : "retries"}`);
  return parts.join(", ");
}

function Task({
  node,
  model,
  onSelect,
  selected,
}: {
  node: GraphNode;
  model: Model | null;
  onSelect?: (id: string) => void;
  selected?: string;
}) {
  const s = model?.tasks.get(node.id);
  const state = model ? stateOf(s) : "idle";
  const c = counts(s);
  const fork = node.kind === "fork";
  return (
    <li class={`g-task g-${state}${selected === node.id ? " g-selected" : ""}`} data-task={node.id} data-state={state}>
      <button
        type="button"
        class="g-box"
        onClick={() => onSelect?.(node.id)}
      >
        <span class="g-kind">{node.kind}</span>
        <span class="g-name">{node.name}</span>
        <span class="visually-hidden">{state}</span>
        {node.detail && <span class="g-detail">{node.detail}</span>}
        {c && <span class="g-counts">{c}</span>}
      </button>
      {node.cases && node.cases.length > 0 && (
        <ul class="g-cases">
          {node.cases.map((k) => (
            <li>
              <code>{k.when ?? "default"}</code> → <strong>{k.then}</strong>
            </li>
          ))}
        </ul>
      )}
      {node.branches && node.branches.length > 0 && (
        <div class={fork ? "g-branches g-fork" : "g-branches"}>
          {node.branches.map((b) => (
            <div class="g-branch">
              <div class="g-branch-label">{b.label}</div>
              <List tasks={b.tasks} model={model} onSelect={onSelect} selected={selected} />
            </div>
          ))}
        </div>
      )}
      {node.then && <div class="g-then">then → {node.then}</div>}
    </li>
  );
}

function List(props: {
  tasks: GraphNode[];
  model: Model | null;
  onSelect?: (id: string) => void;
  selected?: string;
}) {
  return (
    <ol class="g-list">
      {props.tasks.map((t) => (
        <Task node={t} model={props.model} onSelect={props.onSelect} selected={props.selected} />
      ))}
    </ol>
  );
}

export function Graph({
  graph,
  model,
  onSelect,
  selected,
}: {
  graph: GraphData;
  model: Model | null;
  onSelect?: (id: string) => void;
  selected?: string;
}) {
  return (
    <div class="graph" aria-label={`The workflow ${graph.name}`}>
      <div class="g-terminal">start</div>
      <List tasks={graph.tasks} model={model} onSelect={onSelect} selected={selected} />
      <div class="g-terminal">end</div>
      {graph.functions?.map((f) => (
        <div class="g-function">
          <h3>
            {graph.syntax === "cloud-workflows" ? "subworkflow" : "function"} <code>{f.label}</code>
          </h3>
          <List tasks={f.tasks} model={model} onSelect={onSelect} selected={selected} />
        </div>
      ))}
      {model && (
        <ul class="g-legend" aria-label="Legend">
          {["idle", "running", "retrying", "completed", "faulted", "cancelled"].map((s) => (
            <li class={`g-${s}`}>
              <span class="swatch" /> {s}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
