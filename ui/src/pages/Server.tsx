// The server at a glance, refreshed every five seconds: executions by status, the
// journal's commit latency (its histogram and the quantiles it implies), event-stream
// subscribers, replicas and their leases, workers and their load, and schedules. The
// figures are the server's /metrics, drawn.

import { useEffect, useState } from "preact/hooks";
import { ApiError, get, may } from "../api";
import { Time } from "../components/common";
import { href } from "../router";

type Sample = { name: string; labels: Record<string, string>; value: number };

/** The Prometheus text format's samples (comments skipped). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

/** A quantile from a cumulative histogram, by linear interpolation within its bucket. */
function quantile(buckets: [number, number][], q: number): number | undefined {
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  if (!total) return undefined;
  const rank = q * total;
  let [lowerBound, lowerCount] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (!isFinite(le)) return lowerBound;
      return lowerBound + ((le - lowerBound) * (rank - lowerCount)) / Math.max(count - lowerCount, 1);
    }
    [lowerBound, lowerCount] = [le, count];
  }
  return undefined;
}

function ms(seconds: number | undefined) {
  return seconds === undefined ? "–" : `${(seconds * 1000).toFixed(2)} ms`;
}

function Bars({ rows, label }: { rows: [string, number][]; label: string }) {
  const max = Math.max(1, ...rows.map(([, n]) => n));
  return (
    <table class="bars" aria-label={label}>
      <tbody>
        {rows.map(([name, n]) => (
          <tr>
            <th scope="row">{name}</th>
            <td>
              <span class="hbar" style={{ width: `${(100 * n) / max}%` }} />
            </td>
            <td class="num">{n.toLocaleString()}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Server() {
  const [metrics, setMetrics] = useState<Sample[] | null>(null);
  const [info, setInfo] = useState<any>(null);
  const [schedules, setSchedules] = useState<any[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [updated, setUpdated] = useState<string | null>(null);

  useEffect(() => {
    const load = () => {
      const errors: string[] = [];
      // The metrics and the server's picture need the admin role; not asked otherwise.
      const admin = may("admin");
      if (!admin) errors.push("metrics, replicas and workers need a token with the admin role");
      Promise.all([
        admin &&
          get<string>("/metrics")
            .then((t) => setMetrics(parseMetrics(t)))
            .catch((e: ApiError) => errors.push(`metrics: ${e.message}`)),
        admin &&
          get("/v1/server")
            .then(setInfo)
            .catch((e: ApiError) => errors.push(`server: ${e.message}`)),
        get("/v1/schedules")
          .then((s) => setSchedules(s.schedules ?? []))
          .catch((e: ApiError) => errors.push(`schedules: ${e.message}`)),
      ]).then(() => {
        setError(errors.length ? errors.join("; ") : null);
        setUpdated(new Date().toISOString());
      });
    };
    load();
    const t = setInterval(load, 5000);
    return () => clearInterval(t);
  }, []);

  const order = ["pending", "running", "waiting", "suspended", "completed", "faulted", "cancelled"];
  const byStatus: [string, number][] = (metrics ?? [])
    .filter((s) => s.name === "skein_executions")
    .map((s) => [s.labels.status, s.value] as [string, number])
    .sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
  const lifecycle: [string, number][] = (metrics ?? [])
    .filter((s) => s.name === "skein_lifecycle_events_total")
    .map((s) => [s.labels.event, s.value]);
  const buckets: [number, number][] = (metrics ?? [])
    .filter((s) => s.name === "skein_store_commit_seconds_bucket")
    .map((s) => [s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), s.value] as [number, number])
    .sort((a, b) => a[0] - b[0]);
  const commits = metrics ? value(metrics, "skein_store_commit_seconds_count") : undefined;
  const commitSum = metrics ? value(metrics, "skein_store_commit_seconds_sum") : undefined;
  // The buckets that hold commits, and one either side.
  const counts = buckets.map(([, c], i) => c - (i ? buckets[i - 1][1] : 0));
  const first = Math.max(0, counts.findIndex((n) => n > 0) - 1);
  const last = Math.min(counts.length, counts.length - [...counts].reverse().findIndex((n) => n > 0) + 1);
  const perBucket: [string, number][] = buckets
    .slice(first, last)
    .map(([le], j) => [isFinite(le) ? `≤ ${ms(le)}` : "more", counts[first + j]]);

  return (
    <section class="server">
      <div class="page-head">
        <h1>Server</h1>
        {info && (
          <span class="muted">
            skein {info.version} · node {info.node}
            {info.capacity ? ` · capacity ${info.capacity}` : ""}
          </span>
        )}
        {updated && (
          <span class="muted">
            updated <Time iso={updated} />
          </span>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="cards">
        <div class="card">
          <h2>Executions by status</h2>
          <Bars rows={byStatus} label="Executions by status" />
        </div>
        <div class="card">
          <h2>Journal commits</h2>
          <p>
            {commits?.toLocaleString() ?? "–"} commits, mean{" "}
            {commits ? ms((commitSum ?? 0) / commits) : "–"}, p50 {ms(quantile(buckets, 0.5))}, p99{" "}
            {ms(quantile(buckets, 0.99))}
          </p>
          {commits ? (
            <Bars rows={perBucket} label="Commit latency histogram" />
          ) : (
            <p class="muted">No commits since the server started.</p>
          )}
        </div>
        <div class="card">
          <h2>Lifecycle events since start</h2>
          {lifecycle.length ? (
            <Bars rows={lifecycle} label="Lifecycle events" />
          ) : (
            <p class="muted">None since the server started.</p>
          )}
          <p>
            Event-stream subscribers:{" "}
            <strong>{metrics ? (value(metrics, "skein_event_stream_subscribers") ?? 0) : "–"}</strong>
          </p>
        </div>
        <div class="card">
          <h2>Replicas and leases</h2>
          {info && info.replicas.length === 0 && <p class="muted">No execution is held under lease (one server on SQLite runs them all).</p>}
          {info && info.replicas.length > 0 && (
            <table class="list">
              <thead>
                <tr>
                  <th scope="col">Replica</th>
                  <th scope="col">Executions</th>
                  <th scope="col">Lease until</th>
                </tr>
              </thead>
              <tbody>
                {info.replicas.map((r: any) => (
                  <tr>
                    <td class="mono">{r.node}</td>
                    <td class="num">{r.executions}</td>
                    <td>
                      <Time iso={r.leaseUntil} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {info && info.leases.length > 0 && (
            <table class="list">
              <thead>
                <tr>
                  <th scope="col">Lease</th>
                  <th scope="col">Holder</th>
                  <th scope="col">Until</th>
                </tr>
              </thead>
              <tbody>
                {info.leases.map((l: any) => (
                  <tr>
                    <td class="mono">{l.name}</td>
                    <td class="mono">{l.holder}</td>
                    <td>
                      <Time iso={l.leaseUntil} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {metrics && (
            <p class="muted">
              Takeovers {value(metrics, "skein_lease_takeovers_total") ?? 0}, leases lost{" "}
              {value(metrics, "skein_leases_lost_total") ?? 0}
            </p>
          )}
        </div>
        <div class="card">
          <h2>Workers</h2>
          {info && info.workers.length === 0 && <p class="muted">No workers.</p>}
          {info && info.workers.length > 0 && (
            <table class="list">
              <thead>
                <tr>
                  <th scope="col">Worker</th>
                  <th scope="col">Load</th>
                  <th scope="col">Finished</th>
                  <th scope="col">Refused</th>
                </tr>
              </thead>
              <tbody>
                {info.workers.map((w: any) => {
                  if (!w.metrics)
                    return (
                      <tr>
                        <td class="mono">{w.url}</td>
                        <td colSpan={3} class="error">
                          {w.error}
                        </td>
                      </tr>
                    );
                  const s = parseMetrics(w.metrics);
                  const running = value(s, "skein_worker_tasks_running") ?? 0;
                  const slots = value(s, "skein_worker_slots") ?? 0;
                  const finished = s.filter((x) => x.name.startsWith("skein_worker_tasks_finished")).reduce((a, x) => a + x.value, 0);
                  const refused = s.filter((x) => x.name.startsWith("skein_worker_tasks_refused")).reduce((a, x) => a + x.value, 0);
                  return (
                    <tr>
                      <td class="mono">
                        {w.url}
                        {value(s, "skein_worker_draining") ? " (draining)" : ""}
                      </td>
                      <td>
                        <meter min={0} max={Math.max(slots, 1)} value={running} aria-label={`${running} of ${slots} slots`} /> {running}/{slots}
                      </td>
                      <td class="num">{finished}</td>
                      <td class="num">{refused}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </div>
        <div class="card">
          <h2>Schedules</h2>
          {schedules && schedules.length === 0 && <p class="muted">No schedules.</p>}
          {schedules && schedules.length > 0 && (
            <table class="list">
              <thead>
                <tr>
                  <th scope="col">Schedule</th>
                  <th scope="col">State</th>
                  <th scope="col">Started</th>
                  <th scope="col">Next</th>
                </tr>
              </thead>
              <tbody>
                {schedules.map((s: any) => (
                  <tr>
                    <td>
                      <a href={href("/executions", { label: `skein.dev/schedule:${s.id}` })}>{s.id}</a>
                    </td>
                    <td>
                      {s.paused ? "paused" : "active"}
                      {s.lastError && <span class="error"> {s.lastError}</span>}
                    </td>
                    <td class="num">{s.started}</td>
                    <td>{s.upcoming?.[0] ? <Time iso={s.upcoming[0]} /> : "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      </div>
    </section>
  );
}
