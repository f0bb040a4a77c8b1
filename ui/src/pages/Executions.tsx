// The executions list: filters in the URL (so every view has a link), pages from the
// server, kept current by the stream of all executions' events, and bulk cancel.

import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, follow, get, may, post } from "../api";
import { FINAL, Status, Time, duration } from "../components/common";
import { executionHref, href, navigate } from "../router";

interface Execution {
  id: string;
  workflow: { name: string; namespace: string; version: string };
  status: string;
  labels?: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

const STATUSES = ["pending", "running", "waiting", "suspended", "completed", "faulted", "cancelled"];

/** A datetime-local value as RFC 3339, in the browser's time zone. */
function rfc3339(local: string): string {
  return local ? new Date(local).toISOString() : "";
}
function local(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(+d)) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function Executions({ query }: { query: URLSearchParams }) {
  const filters = {
    status: query.get("status") ?? "",
    name: query.get("name") ?? "",
    label: query.get("label") ?? "",
    since: query.get("since") ?? "",
    until: query.get("until") ?? "",
    cursor: query.get("cursor") ?? "",
  };
  const [page, setPage] = useState<{ executions: Execution[]; nextCursor?: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [focus, setFocus] = useState(0);
  const [search, setSearch] = useState("");
  const [live, setLive] = useState("connecting");
  const [took, setTook] = useState<number | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [stale, setStale] = useState(0);
  const key = query.toString();

  const apiQuery = useMemo(() => {
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    return q.toString();
  }, [key]);

  useEffect(() => {
    let cancelled = false;
    const began = performance.now();
    get(`/v1/executions?${apiQuery}`)
      .then((p) => {
        if (cancelled) return;
        setTook(performance.now() - began);
        setPage(p);
        setError(null);
      })
      .catch((e: ApiError) => !cancelled && setError(e.message));
    return () => {
      cancelled = true;
    };
  }, [apiQuery, stale]);

  // Live: any execution's lifecycle change reloads the page shown, at most twice a second.
  useEffect(() => {
    const abort = new AbortController();
    let timer: number | undefined;
    follow(
      "/v1/events",
      (events) => {
        if (!events.some(({ event }) => event.type.includes(".workflow."))) return;
        if (timer === undefined)
          timer = window.setTimeout(() => {
            timer = undefined;
            setStale((n) => n + 1);
          }, 500);
      },
      abort.signal,
      (state) => setLive(typeof state === "string" ? state : `error: ${state.error}`),
    );
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, []);

  const rows = page?.executions ?? [];
  const set = (changes: Record<string, string>) => {
    const q = new URLSearchParams(query);
    for (const [k, v] of Object.entries(changes)) {
      if (v) q.set(k, v);
      else q.delete(k);
    }
    if (!("cursor" in changes)) q.delete("cursor");
    navigate(href("/executions") + (q.toString() ? `?${q}` : ""));
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.target as HTMLElement).closest("input, textarea, select")) return;
      if (e.metaKey || e.ctrlKey || e.altKey) return;
      if (e.key === "j") setFocus((f) => Math.min(f + 1, rows.length - 1));
      else if (e.key === "k") setFocus((f) => Math.max(f - 1, 0));
      else if (e.key === "Enter" && rows[focus]) navigate(executionHref(rows[focus].id));
      else if (e.key === "x" && rows[focus]) toggle(rows[focus].id);
      else return;
      e.preventDefault();
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, [rows, focus, selected]);

  useEffect(() => {
    document.querySelector(`tr[data-index="${focus}"]`)?.scrollIntoView({ block: "nearest" });
  }, [focus]);

  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };

  const cancelSelected = async () => {
    const ids = [...selected];
    if (!confirm(`Cancel ${ids.length} execution${ids.length === 1 ? "" : "s"}?`)) return;
    const failed: string[] = [];
    await Promise.all(
      ids.map((id) =>
        post(`/v1/executions/${encodeURIComponent(id)}/cancel`).catch((e: ApiError) => {
          failed.push(`${id}: ${e.message}`);
        }),
      ),
    );
    setSelected(new Set());
    setNotice(
      failed.length
        ? `Cancelled ${ids.length - failed.length}; not cancelled: ${failed.join("; ")}`
        : `Cancelled ${ids.length}.`,
    );
    setStale((n) => n + 1);
  };

  const openSearch = async (e: Event) => {
    e.preventDefault();
    const id = search.trim();
    if (!id) return;
    try {
      await get(`/v1/executions/${encodeURIComponent(id)}`);
      navigate(executionHref(id));
    } catch (err) {
      setNotice(`No execution \`${id}\`: ${(err as ApiError).message}`);
    }
  };

  const active = rows.filter((e) => !FINAL.includes(e.status));
  const selectable = (e: Execution) => may("run") && !FINAL.includes(e.status);
  const allSelected = active.length > 0 && active.every((e) => selected.has(e.id));

  return (
    <section class="executions">
      <div class="page-head">
        <h1>Executions</h1>
        <span class={`live live-${live.split(":")[0]}`} role="status" aria-live="polite">
          {live === "open" ? "live" : live}
        </span>
      </div>
      <form class="search" role="search" onSubmit={openSearch}>
        <label for="search-id">Open by id</label>
        <input
          id="search-id"
          value={search}
          placeholder="execution id (press /)"
          onInput={(e) => setSearch((e.target as HTMLInputElement).value)}
        />
        <button type="submit">Open</button>
      </form>
      <form
        class="filters"
        aria-label="Filters"
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget as HTMLFormElement;
          const text = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
          set({ name: text("name"), label: text("label") });
        }}
      >
        <label>
          Status
          <select
            name="status"
            value={filters.status}
            onChange={(e) => set({ status: (e.target as HTMLSelectElement).value })}
          >
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Workflow
          {/* Uncontrolled, so that a live reload of the list does not undo typing. */}
          <input
            name="name"
            key={`name-${filters.name}`}
            defaultValue={filters.name}
            placeholder="name"
            onChange={(e) => set({ name: (e.target as HTMLInputElement).value.trim() })}
          />
        </label>
        <label>
          Label
          <input
            name="label"
            key={`label-${filters.label}`}
            defaultValue={filters.label}
            placeholder="name:value"
            onChange={(e) => set({ label: (e.target as HTMLInputElement).value.trim() })}
          />
        </label>
        <label>
          From
          <input
            name="since"
            type="datetime-local"
            value={local(filters.since)}
            onChange={(e) => set({ since: rfc3339((e.target as HTMLInputElement).value) })}
          />
        </label>
        <label>
          Until
          <input
            name="until"
            type="datetime-local"
            value={local(filters.until)}
            onChange={(e) => set({ until: rfc3339((e.target as HTMLInputElement).value) })}
          />
        </label>
        <button type="submit">Apply</button>
        {Object.values(filters).some(Boolean) && (
          <button type="button" onClick={() => navigate(href("/executions"))}>
            Clear
          </button>
        )}
      </form>
      {notice && (
        <p class="notice" role="status">
          {notice}{" "}
          <button type="button" class="link" onClick={() => setNotice(null)}>
            dismiss
          </button>
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="bulk">
        <button type="button" class="danger" disabled={selected.size === 0} onClick={cancelSelected}>
          Cancel selected ({selected.size})
        </button>
        {took !== null && <span class="muted">page loaded in {Math.round(took)} ms</span>}
      </div>
      <div class="table-wrap">
        <table class="list">
          <thead>
            <tr>
              <th scope="col">
                <input
                  type="checkbox"
                  aria-label="Select all running on this page"
                  checked={allSelected}
                  disabled={active.length === 0 || !may("run")}
                  onChange={() =>
                    setSelected(allSelected ? new Set() : new Set(active.map((e) => e.id)))
                  }
                />
              </th>
              <th scope="col">Execution</th>
              <th scope="col">Workflow</th>
              <th scope="col">Status</th>
              <th scope="col">Labels</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((e, i) => {
              const end = FINAL.includes(e.status) ? Date.parse(e.updatedAt) : Date.now();
              return (
                <tr data-index={i} class={i === focus ? "focused" : ""} data-status={e.status}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`Select ${e.id}`}
                      checked={selected.has(e.id)}
                      disabled={!selectable(e)}
                      onChange={() => toggle(e.id)}
                    />
                  </td>
                  <td>
                    <a href={executionHref(e.id)} class="mono">
                      {e.id}
                    </a>
                  </td>
                  <td>
                    <a href={href("/executions", { name: e.workflow.name })}>{e.workflow.name}</a>
                  </td>
                  <td>
                    <Status status={e.status} />
                  </td>
                  <td class="labels">
                    {Object.entries(e.labels ?? {}).map(([k, v]) => (
                      <a class="label" href={href("/executions", { label: `${k}:${v}` })}>
                        {k}: {v}
                      </a>
                    ))}
                  </td>
                  <td>
                    <Time iso={e.createdAt} />
                  </td>
                  <td>{duration(end - Date.parse(e.createdAt))}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {page && rows.length === 0 && <p class="empty">No executions match.</p>}
      </div>
      <nav class="pager" aria-label="Pages">
        {filters.cursor && (
          <button type="button" onClick={() => history.back()}>
            ← Newer
          </button>
        )}
        {page?.nextCursor && (
          <a class="button" href={`${location.pathname}?${withCursor(query, page.nextCursor)}`}>
            Older →
          </a>
        )}
      </nav>
    </section>
  );
}

function withCursor(query: URLSearchParams, cursor: string) {
  const q = new URLSearchParams(query);
  q.set("cursor", cursor);
  return q.toString();
}

export type { Execution };
