// Named workflows: the list, one workflow's revisions with its source highlighted and
// the validator's diagnostics beside their lines, its graph, and a form that starts it
// (fields from its input schema where it gives one); and an editor that checks a new
// definition as it is typed and deploys it.

import hljs from "highlight.js/lib/core";
import yaml from "highlight.js/lib/languages/yaml";
import json from "highlight.js/lib/languages/json";
import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, get, post } from "../api";
import { Time } from "../components/common";
import { Graph, type GraphData } from "../components/Graph";
import { executionHref, href, navigate } from "../router";

hljs.registerLanguage("yaml", yaml);
hljs.registerLanguage("json", json);

interface Diagnostic {
  line: number;
  column: number;
  path: string;
  message: string;
  help?: string;
  severity?: string;
}

interface Validated {
  valid: boolean;
  diagnostics: Diagnostic[];
  graph?: GraphData;
}

export function Workflows() {
  const [list, setList] = useState<any[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    get("/v1/workflows")
      .then((l) => setList(l.workflows))
      .catch((e: ApiError) => setError(e.message));
  }, []);
  return (
    <section>
      <div class="page-head">
        <h1>Workflows</h1>
        <a class="button primary" href={href("/workflows/new")}>
          New workflow
        </a>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list && list.length === 0 && (
        <p class="empty">
          No named workflows yet: deploy one here, with <code>skein workflows deploy NAME FILE</code>, or
          through Google's Workflows API.
        </p>
      )}
      {list && list.length > 0 && (
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Syntax</th>
              <th scope="col">Latest revision</th>
              <th scope="col">Deployed</th>
              <th scope="col">Executions</th>
            </tr>
          </thead>
          <tbody>
            {list.map((w) => (
              <tr>
                <td>
                  <a href={href(`/workflows/${encodeURIComponent(w.name)}`)}>{w.name}</a>
                </td>
                <td>{w.syntax}</td>
                <td>{w.revision}</td>
                <td>
                  <Time iso={w.createdAt} />
                </td>
                <td>
                  <a href={href("/executions", { name: w.name })}>executions</a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The source with line numbers, highlighted, each diagnostic under its line. */
function Source({ text, diagnostics }: { text: string; diagnostics: Diagnostic[] }) {
  const lines = useMemo(() => {
    const language = text.trimStart().startsWith("{") ? "json" : "yaml";
    // Highlighted line by line, so that diagnostics go between lines; a token that
    // spans lines (a block scalar) is coloured per line, which is what a reader expects.
    return text.split("\n").map((line) => hljs.highlight(line, { language, ignoreIllegals: true }).value);
  }, [text]);
  const byLine = new Map<number, Diagnostic[]>();
  for (const d of diagnostics) byLine.set(d.line, [...(byLine.get(d.line) ?? []), d]);
  return (
    <pre class="source" aria-label="Source" tabIndex={0}>
      {lines.map((html, i) => (
        <>
          <span class={byLine.has(i + 1) ? "src-line has-diagnostic" : "src-line"}>
            <span class="ln" aria-hidden="true">
              {i + 1}
            </span>
            <span dangerouslySetInnerHTML={{ __html: html || " " }} />
          </span>
          {(byLine.get(i + 1) ?? []).map((d) => (
            <span class={`diagnostic ${d.severity ?? "error"}`} role="note">
              {"  ".repeat(0)}
              {d.severity ?? "error"} at {d.line}:{d.column} ({d.path}): {d.message}
              {d.help ? ` (${d.help})` : ""}
            </span>
          ))}
        </>
      ))}
    </pre>
  );
}

/** Fields for an object schema's simple properties; anything else as JSON. */
function InputForm({
  schema,
  onStart,
}: {
  schema: any;
  onStart: (input: unknown, id: string, labels: Record<string, string>) => Promise<void>;
}) {
  const props: [string, any][] =
    schema?.type === "object" && schema.properties ? Object.entries(schema.properties) : [];
  const simple = props.filter(([, p]) => ["string", "integer", "number", "boolean"].includes(p?.type));
  const required: string[] = schema?.required ?? [];
  const [values, setValues] = useState<Record<string, any>>({});
  const [rest, setRest] = useState("{}");
  const [id, setId] = useState("");
  const [labels, setLabels] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    let input: any;
    try {
      input = JSON.parse(rest || "{}");
    } catch (err) {
      setError(`The JSON input is not JSON: ${(err as Error).message}`);
      return;
    }
    for (const [name, p] of simple) {
      const v = values[name];
      if (v === undefined || v === "") continue;
      input[name] = p.type === "integer" ? parseInt(v, 10) : p.type === "number" ? Number(v) : p.type === "boolean" ? v === true : v;
    }
    const parsedLabels: Record<string, string> = {};
    for (const pair of labels.split(",").map((s) => s.trim()).filter(Boolean)) {
      const [k, ...v] = pair.split(":");
      parsedLabels[k.trim()] = v.join(":").trim();
    }
    setBusy(true);
    try {
      await onStart(input, id.trim(), parsedLabels);
    } catch (err) {
      setError((err as Error).message);
    }
    setBusy(false);
  };
  return (
    <form class="start" onSubmit={submit} aria-labelledby="start-title">
      <h2 id="start-title">Start an execution</h2>
      {simple.map(([name, p]) => (
        <div class="field">
          <label for={`in-${name}`}>
            {name}
            {required.includes(name) ? " *" : ""}
            {p.description && <span class="muted"> {p.description}</span>}
          </label>
          {p.type === "boolean" ? (
            <input id={`in-${name}`} type="checkbox" checked={!!values[name]} onChange={(e) => setValues({ ...values, [name]: (e.target as HTMLInputElement).checked })} />
          ) : p.enum ? (
            <select id={`in-${name}`} value={values[name] ?? ""} required={required.includes(name)} onChange={(e) => setValues({ ...values, [name]: (e.target as HTMLSelectElement).value })}>
              <option value="" />
              {p.enum.map((v: any) => (
                <option value={v}>{String(v)}</option>
              ))}
            </select>
          ) : (
            <input
              id={`in-${name}`}
              type={p.type === "string" ? "text" : "number"}
              step={p.type === "integer" ? 1 : "any"}
              min={p.minimum}
              max={p.maximum}
              required={required.includes(name)}
              value={values[name] ?? ""}
              onInput={(e) => setValues({ ...values, [name]: (e.target as HTMLInputElement).value })}
            />
          )}
        </div>
      ))}
      <label for="in-json">{simple.length ? "Other input (JSON)" : "Input (JSON)"}</label>
      <textarea id="in-json" rows={4} value={rest} onInput={(e) => setRest((e.target as HTMLTextAreaElement).value)} />
      <label for="in-id">Execution id (optional; makes the start idempotent)</label>
      <input id="in-id" value={id} onInput={(e) => setId((e.target as HTMLInputElement).value)} />
      <label for="in-labels">Labels (optional; name:value, comma-separated)</label>
      <input id="in-labels" value={labels} onInput={(e) => setLabels((e.target as HTMLInputElement).value)} />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" class="primary" disabled={busy}>
        Start
      </button>
    </form>
  );
}

export function Workflow({ name, revision }: { name: string; revision: string | null }) {
  const [workflow, setWorkflow] = useState<any>(null);
  const [checked, setChecked] = useState<Validated | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const q = revision ? `?revision=${encodeURIComponent(revision)}` : "";
    get(`/v1/workflows/${encodeURIComponent(name)}${q}`)
      .then((w) => {
        setWorkflow(w);
        return post<Validated>("/v1/validate", { workflow: w.workflow }).then(setChecked);
      })
      .catch((e: ApiError) => setError(e.message));
  }, [name, revision]);
  if (error)
    return (
      <section>
        <h1>{name}</h1>
        <p class="error" role="alert">
          {error}
        </p>
      </section>
    );
  if (!workflow) return <section aria-busy="true">Loading {name}…</section>;
  const start = async (input: unknown, id: string, labels: Record<string, string>) => {
    const body: any = { workflowRef: `${name}@${workflow.revision}`, input, labels };
    if (id) body.id = id;
    const started = await post("/v1/executions", body);
    navigate(executionHref(started.id));
  };
  return (
    <section class="workflow">
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={href("/workflows")}>Workflows</a>
      </nav>
      <div class="page-head">
        <h1>{name}</h1>
        <span class="muted">
          {workflow.syntax}, revision {workflow.revision}, deployed <Time iso={workflow.createdAt} />
        </span>
      </div>
      <div class="revisions">
        <label for="revision">Revision</label>
        <select
          id="revision"
          value={String(workflow.revision)}
          onChange={(e) => navigate(href(`/workflows/${encodeURIComponent(name)}`, { revision: (e.target as HTMLSelectElement).value }))}
        >
          {(workflow.revisions ?? []).map((r: number) => (
            <option value={String(r)}>{r}</option>
          ))}
        </select>
        <a href={href("/executions", { name })}>Its executions</a>
      </div>
      <div class="two-columns">
        <div>
          <h2>Source</h2>
          {checked && checked.diagnostics.length === 0 && <p class="ok">No problems found.</p>}
          <Source text={workflow.workflow} diagnostics={checked?.diagnostics ?? []} />
        </div>
        <div>
          <InputForm schema={checked?.graph?.inputSchema} onStart={start} />
          {checked?.graph && (
            <>
              <h2>Graph</h2>
              <Graph graph={checked.graph} model={null} />
            </>
          )}
        </div>
      </div>
    </section>
  );
}

export function NewWorkflow() {
  const [name, setName] = useState("");
  const [text, setText] = useState(
    "document:\n  dsl: '1.0.3'\n  namespace: default\n  name: hello\n  version: '1.0.0'\ndo:\n  - greet:\n      set:\n        message: ${ \"hello, \" + (.name // \"world\") }\n",
  );
  const [checked, setChecked] = useState<Validated | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const t = setTimeout(() => {
      post<Validated>("/v1/validate", { workflow: text })
        .then((v) => {
          setChecked(v);
          setError(null);
        })
        .catch((e: ApiError) => setError(e.message));
    }, 300);
    return () => clearTimeout(t);
  }, [text]);
  const deploy = async (e: Event) => {
    e.preventDefault();
    try {
      const w = await post("/v1/workflows", { name, workflow: text });
      navigate(href(`/workflows/${encodeURIComponent(w.name)}`));
    } catch (err) {
      setError((err as ApiError).message);
    }
  };
  return (
    <section>
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={href("/workflows")}>Workflows</a>
      </nav>
      <h1>New workflow</h1>
      <form onSubmit={deploy} class="editor">
        <label for="wf-name">Name</label>
        <input id="wf-name" required pattern="[A-Za-z][A-Za-z0-9_\-]{0,63}" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <label for="wf-source">Definition (Serverless Workflow or Cloud Workflows, YAML or JSON)</label>
        <textarea id="wf-source" rows={16} spellcheck={false} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p role="status">
          {checked ? (checked.valid ? `Valid${checked.diagnostics.length ? ` with ${checked.diagnostics.length} warnings` : ""}.` : `${checked.diagnostics.filter((d) => d.severity === "error").length} problems.`) : "Checking…"}
        </p>
        <button type="submit" class="primary" disabled={!checked?.valid}>
          Deploy
        </button>
      </form>
      <Source text={text} diagnostics={checked?.diagnostics ?? []} />
      {checked?.graph && <Graph graph={checked.graph} model={null} />}
    </section>
  );
}
