// Small pieces every page uses: status badges, times and durations, folded JSON with a
// copy button, fan-out progress bars.

import { useState } from "preact/hooks";

export const FINAL = ["completed", "faulted", "cancelled"];

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status}`}>{status}</span>;
}

export function duration(ms: number): string {
  if (!isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function when(iso: string): string {
  const d = new Date(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString(undefined, { hour12: false })
    : d.toLocaleString(undefined, { hour12: false });
}

export function Time({ iso }: { iso: string }) {
  return (
    <time dateTime={iso} title={iso}>
      {when(iso)}
    </time>
  );
}

function Node({ name, value, depth }: { name?: string; value: unknown; depth: number }) {
  const [open, setOpen] = useState(depth < 2);
  const key = name !== undefined ? <span class="json-key">{JSON.stringify(name)}: </span> : null;
  if (value === null || typeof value !== "object") {
    const cls = value === null ? "json-null" : `json-${typeof value}`;
    return (
      <div class="json-line">
        {key}
        <span class={cls}>{JSON.stringify(value)}</span>
      </div>
    );
  }
  const entries = Array.isArray(value)
    ? value.map((v, i) => [String(i), v] as const)
    : Object.entries(value as Record<string, unknown>);
  const [l, r] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0)
    return (
      <div class="json-line">
        {key}
        {l + r}
      </div>
    );
  const shown = entries.slice(0, 500);
  return (
    <div class="json-line">
      <button
        type="button"
        class="json-toggle"
        aria-expanded={open}
        onClick={() => setOpen(!open)}
        aria-label={open ? "Fold" : "Unfold"}
      >
        {open ? "▾" : "▸"}
      </button>
      {key}
      {l}
      {!open && (
        <span class="json-summary">
          {" "}
          {entries.length} {Array.isArray(value) ? "items" : "keys"} {r}
        </span>
      )}
      {open && (
        <>
          <div class="json-children">
            {shown.map(([k, v]) => (
              <Node key={k} name={Array.isArray(value) ? undefined : k} value={v} depth={depth + 1} />
            ))}
            {entries.length > shown.length && (
              <div class="muted">… {entries.length - shown.length} more (copy to see all)</div>
            )}
          </div>
          {r}
        </>
      )}
    </div>
  );
}

/** JSON, folded below the second level, with a button that copies all of it. */
export function Json({ value, label }: { value: unknown; label: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    const text = JSON.stringify(value, null, 2);
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Without clipboard access (plain http off loopback): select a text area instead.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <figure class="json" aria-label={label}>
      <figcaption>
        <span>{label}</span>
        <button type="button" onClick={copy}>
          {copied ? "Copied" : "Copy"}
        </button>
      </figcaption>
      <div class="json-body">
        <Node value={value} depth={0} />
      </div>
    </figure>
  );
}

export interface FanOut {
  task: string;
  total: number;
  done: number;
  failed: number;
  running: number;
}

export function FanOutBar({ f }: { f: FanOut }) {
  const total = Math.max(f.total, 1);
  const pct = (n: number) => `${(100 * n) / total}%`;
  const finished = f.done + f.failed;
  const percent = Math.floor((100 * finished) / total);
  return (
    <div class="fanout">
      <div class="fanout-label">
        <code>{f.task}</code>
        <span>
          {f.done} done, {f.failed} failed, {f.running} running of {f.total}
        </span>
      </div>
      <div
        class="bar"
        role="progressbar"
        aria-label={`Fan-out ${f.task}`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        aria-valuetext={`${percent}%`}
        data-task={f.task}
      >
        <span class="bar-done" style={{ width: pct(f.done) }} />
        <span class="bar-failed" style={{ width: pct(f.failed) }} />
        <span class="bar-running" style={{ width: pct(f.running) }} />
      </div>
      <span class="fanout-percent">{percent}%</span>
    </div>
  );
}

export function Problem({ error }: { error: any }) {
  if (!error) return null;
  return (
    <div class="problem" role="alert">
      <strong>{error.title ?? "Error"}</strong>
      {error.status && <span class="muted"> (status {error.status})</span>}
      {error.detail && <p>{error.detail}</p>}
      <dl>
        {error.type && (
          <>
            <dt>type</dt>
            <dd>
              <code>{error.type}</code>
            </dd>
          </>
        )}
        {error.instance && (
          <>
            <dt>task</dt>
            <dd>
              <code>{error.instance}</code>
            </dd>
          </>
        )}
      </dl>
    </div>
  );
}
