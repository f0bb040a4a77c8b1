// One execution, live: its status and timings, its fan-outs' bars, the workflow graph
// coloured by state, the timeline, the event log with replay, the workers' output, its
// input, output and error, its cost, and the controls that steer it.
//
// Events arrive in bursts (a fan-out of 10,000 tasks sends tens of thousands); they are
// queued and applied once per animation frame, so the page redraws at most 60 times a
// second however fast they come.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, type CloudEvent, follow, get, may, post, request } from "../api";
import { FINAL, FanOutBar, Json, Problem, Status, Time, duration } from "../components/common";
import { Graph, type GraphData } from "../components/Graph";
import { Timeline } from "../components/Timeline";
import { Model, endsWorkflow, replay } from "../model";
import { executionHref, href } from "../router";

const TABS = [
  ["graph", "Graph"],
  ["timeline", "Timeline"],
  ["events", "Events"],
  ["output", "Output"],
  ["data", "Input and output"],
  ["steer", "Send"],
] as const;

export function Execution({ id, tab }: { id: string; tab: string }) {
  const path = `/v1/executions/${id.split("/").map(encodeURIComponent).join("/")}`;
  const [execution, setExecution] = useState<any>(null);
  const [graph, setGraph] = useState<GraphData | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  const [stream, setStream] = useState("connecting");
  const [replayAt, setReplayAt] = useState<number | null>(null);
  const [selectedTask, setSelectedTask] = useState<string | undefined>();
  const events = useRef<CloudEvent[]>([]);
  const model = useRef(new Model());
  const [now, setNow] = useState(Date.now());

  const refresh = () =>
    get(path)
      .then((e) => {
        setExecution(e);
        setError(null);
      })
      .catch((e: ApiError) => setError(e.message));

  useEffect(() => {
    events.current = [];
    model.current = new Model();
    setExecution(null);
    setGraph(null);
    setReplayAt(null);
    refresh();
    get(`${path}/graph`)
      .then(setGraph)
      .catch((e: ApiError) => setNotice(`The graph is not available: ${e.message}`));
    const abort = new AbortController();
    let queue: CloudEvent[] = [];
    let frame = 0;
    const flush = () => {
      frame = 0;
      const batch = queue;
      queue = [];
      let ended = false;
      for (const e of batch) {
        events.current.push(e);
        model.current.apply(e);
        if (e.type.includes(".workflow.")) ended = true;
      }
      if (ended) refresh();
      setVersion((v) => v + 1);
    };
    follow(
      `${path}/events`,
      (batch) => {
        for (const { event } of batch) queue.push(event);
        if (!frame) frame = requestAnimationFrame(flush);
      },
      abort.signal,
      (state) => setStream(typeof state === "string" ? state : `error: ${state.error}`),
      // The server ends an execution's stream once it has ended and sent every event:
      // done once its last event is in (queued or applied).
      () => model.current.end !== null || queue.some((e) => endsWorkflow(e.type)),
    );
    return () => {
      abort.abort();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [id]);

  const final = execution && FINAL.includes(execution.status);
  useEffect(() => {
    if (final) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [final]);

  // Replay: the model of the first `replayAt` events instead of all of them.
  const shown = useMemo(
    () => (replayAt === null ? model.current : replay(events.current, replayAt)),
    [replayAt, version],
  );
  const [playing, setPlaying] = useState(false);
  useEffect(() => {
    if (!playing) return;
    const total = events.current.length;
    const step = Math.max(1, Math.ceil(total / 150));
    const t = setInterval(() => {
      setReplayAt((at) => {
        const next = (at ?? 0) + step;
        if (next >= total) {
          setPlaying(false);
          return null;
        }
        return next;
      });
    }, 40);
    return () => clearInterval(t);
  }, [playing]);

  const steer = async (action: "cancel" | "pause" | "resume") => {
    if (action === "cancel" && !confirm(`Cancel ${id}?`)) return;
    try {
      setExecution({ ...execution, ...(await post(`${path}/${action}`)) });
      setNotice(null);
    } catch (e) {
      setNotice(`Could not ${action}: ${(e as ApiError).message}`);
    }
  };

  if (error && !execution)
    return (
      <section>
        <h1 class="mono">{id}</h1>
        <p class="error" role="alert">
          {error}
        </p>
        <a href={href("/executions")}>All executions</a>
      </section>
    );
  if (!execution) return <section aria-busy="true">Loading {id}…</section>;

  const started = Date.parse(execution.createdAt);
  const ended = final ? Date.parse(execution.updatedAt) : now;
  // The events' counters; before they arrive, the server's (not while replaying).
  const fanOuts =
    shown.fanOuts.size || replayAt !== null
      ? [...shown.fanOuts.values()]
      : ((execution.progress?.fanOuts ?? []) as any[]);
  const cost = shown.cost();
  const tabLink = (t: string, label: string) => (
    <a
      role="tab"
      href={executionHref(id, t === "graph" ? undefined : t)}
      aria-selected={tab === t}
      class={tab === t ? "tab active" : "tab"}
    >
      {label}
    </a>
  );
  const paused = execution.status === "suspended";
  // A read token sees everything and steers nothing.
  const steerable = may("run");

  return (
    <section class="execution">
      <nav class="crumbs" aria-label="Breadcrumbs">
        <a href={href("/executions")}>Executions</a> ›{" "}
        <a href={href("/executions", { name: execution.workflow.name })}>{execution.workflow.name}</a>
      </nav>
      <div class="page-head">
        <h1 class="mono">{id}</h1>
        <Status status={execution.status} />
        <span class={`live live-${stream.split(":")[0]}`} role="status" aria-live="polite">
          {final ? "" : stream === "open" ? "live" : stream}
        </span>
      </div>
      <div class="actions" role="group" aria-label="Steer">
        <button type="button" disabled={!steerable || final || paused} onClick={() => steer("pause")}>
          Pause
        </button>
        <button type="button" disabled={!steerable || final || !paused} onClick={() => steer("resume")}>
          Resume
        </button>
        <button type="button" class="danger" disabled={!steerable || final} onClick={() => steer("cancel")}>
          Cancel
        </button>
        {!steerable && <span class="muted">This session's token may read, not steer.</span>}
      </div>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <dl class="facts">
        <dt>Workflow</dt>
        <dd>
          {execution.workflow.namespace}/{execution.workflow.name} {execution.workflow.version}
        </dd>
        <dt>Started</dt>
        <dd>
          <Time iso={execution.createdAt} />
        </dd>
        <dt>{final ? "Took" : "Running for"}</dt>
        <dd>{duration(ended - started)}</dd>
        <dt>Tasks</dt>
        <dd>{taskLine(shown, execution.progress?.tasks)}</dd>
        <dt>Cost</dt>
        <dd title={cost.items.map(([n, q, r]) => `${n}: ${q.toFixed(3)} × $${r}`).join("\n")}>
          ${cost.total.toFixed(6)}{" "}
          <span class="muted">
            ({shown.attempts} metered attempts, {shown.failedAttempts} failed; {shown.steps} steps)
          </span>
        </dd>
        {Object.keys(execution.labels ?? {}).length > 0 && (
          <>
            <dt>Labels</dt>
            <dd>
              {Object.entries(execution.labels).map(([k, v]) => (
                <a class="label" href={href("/executions", { label: `${k}:${v}` })}>
                  {k}: {String(v)}
                </a>
              ))}
            </dd>
          </>
        )}
      </dl>
      {execution.status === "faulted" && <Problem error={execution.error} />}
      {fanOuts.length > 0 && (
        <div class="fanouts" aria-label="Fan-outs">
          {fanOuts.map((f) => (
            <FanOutBar f={f} />
          ))}
        </div>
      )}
      {replayAt !== null && (
        <p class="notice" role="status">
          Replaying: the state after event {replayAt} of {events.current.length}.{" "}
          <button type="button" class="link" onClick={() => (setPlaying(false), setReplayAt(null))}>
            Back to live
          </button>
        </p>
      )}
      <div class="tabs" role="tablist" aria-label="Views">
        {TABS.map(([t, label]) => tabLink(t, label))}
      </div>
      <div class="tab-panel" role="tabpanel">
        {tab === "graph" &&
          (graph ? (
            <div class="graph-with-detail">
              <Graph graph={graph} model={shown} onSelect={setSelectedTask} selected={selectedTask} />
              {selectedTask && <TaskDetail task={selectedTask} events={events.current} />}
            </div>
          ) : (
            <p aria-busy="true">Drawing…</p>
          ))}
        {tab === "timeline" && <Timeline model={shown} now={now} />}
        {tab === "events" && (
          <Events
            events={events.current}
            version={version}
            replayAt={replayAt}
            setReplayAt={(n) => (setPlaying(false), setReplayAt(n))}
            playing={playing}
            play={() => {
              setReplayAt(0);
              setPlaying(true);
            }}
          />
        )}
        {tab === "output" && <Terminal model={shown} />}
        {tab === "data" && (
          <div class="data">
            <Json value={execution.input} label="Input" />
            {execution.output !== undefined && <Json value={execution.output} label="Output" />}
            {execution.error !== undefined && <Json value={execution.error} label="Error" />}
          </div>
        )}
        {tab === "steer" && <Send path={path} graph={graph} final={!!final} />}
      </div>
    </section>
  );
}

/** Task counters from the events (live), or the server's before any arrived. */
function taskLine(model: Model, server: any): string {
  let [started, completed, faulted, cancelled, retries] = [0, 0, 0, 0, 0];
  for (const s of model.tasks.values()) {
    started += s.started;
    completed += s.completed;
    faulted += s.faulted;
    cancelled += s.cancelled;
    retries += s.retried;
  }
  if (model.applied === 0 && server)
    return `${server.completed} done, ${server.running} running, ${server.faulted} faulted, ${server.retries} retries`;
  const running = Math.max(0, started - completed - faulted - cancelled);
  return `${completed} done, ${running} running, ${faulted} faulted, ${retries} retries`;
}

function TaskDetail({ task, events }: { task: string; events: CloudEvent[] }) {
  const mine = events.filter((e) => e.data?.task === task);
  const last = [...mine].reverse().find((e) => e.data?.output !== undefined || e.data?.error);
  return (
    <aside class="task-detail" aria-label={`Task ${task}`}>
      <h3 class="mono">{task}</h3>
      <p>{mine.length} events</p>
      {last?.data?.error && <Problem error={last.data.error} />}
      {last?.data?.output !== undefined && <Json value={last.data.output} label="Last output" />}
    </aside>
  );
}

function Events(props: {
  events: CloudEvent[];
  version: number;
  replayAt: number | null;
  setReplayAt: (n: number | null) => void;
  playing: boolean;
  play: () => void;
}) {
  const [type, setType] = useState("");
  const [limit, setLimit] = useState(200);
  const types = useMemo(
    () => [...new Set(props.events.map((e) => e.type))].sort(),
    [props.version],
  );
  const upTo = props.replayAt ?? props.events.length;
  const matching = props.events.slice(0, upTo).filter((e) => !type || e.type === type);
  const shown = matching.slice(-limit).reverse();
  return (
    <div class="events">
      <div class="replay">
        <button type="button" onClick={props.play} disabled={props.playing || props.events.length === 0}>
          ▶ Replay
        </button>
        <label for="replay-at">Position</label>
        <input
          id="replay-at"
          type="range"
          min={0}
          max={props.events.length}
          value={upTo}
          onInput={(e) => {
            const n = Number((e.target as HTMLInputElement).value);
            props.setReplayAt(n >= props.events.length ? null : n);
          }}
        />
        <span class="muted">
          {upTo} / {props.events.length}
        </span>
        <label for="event-type">Type</label>
        <select id="event-type" value={type} onChange={(e) => setType((e.target as HTMLSelectElement).value)}>
          <option value="">all types</option>
          {types.map((t) => (
            <option value={t}>{t}</option>
          ))}
        </select>
      </div>
      <table class="list event-log">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Time</th>
            <th scope="col">Type</th>
            <th scope="col">Task</th>
            <th scope="col">Data</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((e) => (
            <tr data-type={e.type}>
              <td>{e.sequence}</td>
              <td>
                <Time iso={e.time} />
              </td>
              <td class="mono">{e.type.replace(/^io\.serverlessworkflow\.|^dev\.skein\./, "")}</td>
              <td class="mono">{e.data?.task ?? ""}</td>
              <td>
                <details>
                  <summary>data</summary>
                  <pre>{JSON.stringify(e.data, null, 2)}</pre>
                </details>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {matching.length > shown.length && (
        <button type="button" onClick={() => setLimit(limit * 4)}>
          Show more ({matching.length - shown.length} earlier)
        </button>
      )}
    </div>
  );
}

function Terminal({ model }: { model: Model }) {
  const [task, setTask] = useState("");
  const end = useRef<HTMLDivElement>(null);
  const tasks = [...new Set(model.output.map((l) => l.task))];
  const lines = model.output.filter((l) => !task || l.task === task);
  useEffect(() => end.current?.scrollIntoView({ block: "nearest" }), [lines.length]);
  if (model.output.length === 0)
    return <p class="empty">No output yet: `run` tasks stream their stdout and stderr here.</p>;
  return (
    <div>
      <label for="output-task">Task </label>
      <select id="output-task" value={task} onChange={(e) => setTask((e.target as HTMLSelectElement).value)}>
        <option value="">all tasks</option>
        {tasks.map((t) => (
          <option value={t}>{t}</option>
        ))}
      </select>
      {model.outputDropped > 0 && <p class="muted">{model.outputDropped} earlier pieces not shown.</p>}
      <pre class="terminal" aria-label="Task output" tabIndex={0}>
        {lines.map((l) => (
          <span class={l.stream === "stderr" ? "stderr" : ""} title={l.task}>
            {l.text}
          </span>
        ))}
        <div ref={end} />
      </pre>
    </div>
  );
}

function Send({ path, graph, final }: { path: string; graph: GraphData | null; final: boolean }) {
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [type, setType] = useState("");
  const [data, setData] = useState("{}");
  const [message, setMessage] = useState(0);
  const [payload, setPayload] = useState("{}");
  const messages = graph?.messages ?? [];
  const parse = (text: string) => {
    try {
      return JSON.parse(text || "null");
    } catch (e) {
      throw new Error(`not JSON: ${(e as Error).message}`);
    }
  };
  const run = async (f: () => Promise<any>) => {
    try {
      const answer = await f();
      setResult({ ok: true, text: JSON.stringify(answer ?? "sent", null, 2) });
    } catch (e) {
      setResult({ ok: false, text: (e as Error).message });
    }
  };
  const sendEvent = (e: Event) => {
    e.preventDefault();
    run(() => post(`${path}/events`, { specversion: "1.0", id: crypto.randomUUID(), source: "/ui", type, data: parse(data) }));
  };
  const sendMessage = (e: Event) => {
    e.preventDefault();
    const m = messages[message];
    if (!m) return;
    const name = encodeURIComponent(m.name);
    if (m.kind === "query") run(() => get(`${path}/queries/${name}`));
    else if (m.kind === "signal") run(() => post(`${path}/signals/${name}`, parse(payload)));
    else
      run(() =>
        request("POST", `${path}/updates/${name}?wait=30s`, parse(payload), {
          "idempotency-key": crypto.randomUUID(),
        }),
      );
  };
  return (
    <div class="send">
      <form onSubmit={sendEvent} aria-labelledby="send-event">
        <h2 id="send-event">Send an event</h2>
        <label for="event-type-in">CloudEvent type</label>
        <input id="event-type-in" value={type} required placeholder="com.example.approved" onInput={(e) => setType((e.target as HTMLInputElement).value)} />
        <label for="event-data">Data (JSON)</label>
        <textarea id="event-data" rows={4} value={data} onInput={(e) => setData((e.target as HTMLTextAreaElement).value)} />
        <button type="submit" disabled={final}>
          Send event
        </button>
      </form>
      {messages.length > 0 && (
        <form onSubmit={sendMessage} aria-labelledby="send-message">
          <h2 id="send-message">Signal, query or update</h2>
          <label for="message">Message</label>
          <select id="message" value={message} onChange={(e) => setMessage(Number((e.target as HTMLSelectElement).value))}>
            {messages.map((m, i) => (
              <option value={i}>
                {m.kind} {m.name}
              </option>
            ))}
          </select>
          {messages[message]?.kind !== "query" && (
            <>
              <label for="message-payload">Payload (JSON)</label>
              <textarea id="message-payload" rows={3} value={payload} onInput={(e) => setPayload((e.target as HTMLTextAreaElement).value)} />
            </>
          )}
          <button type="submit">{messages[message]?.kind === "query" ? "Ask" : "Send"}</button>
        </form>
      )}
      {result && (
        <pre class={result.ok ? "result" : "result error"} role="status">
          {result.text}
        </pre>
      )}
    </div>
  );
}
