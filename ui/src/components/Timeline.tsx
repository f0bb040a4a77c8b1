// The timeline: one row per task, a bar per attempt from its start to its end (still
// growing while it runs), coloured by how it ended; retries are marked where they were
// decided, and the gap before the next attempt is the backoff wait. Drawn on a canvas,
// so a fan-out of thousands of attempts stays cheap.

import { useEffect, useRef } from "preact/hooks";
import type { Model } from "../model";
import { duration } from "./common";

const ROW = 18;
const LABEL = 260;

function colour(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim() || "#888";
}

export function Timeline({ model, now }: { model: Model; now: number }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const start = model.start ?? now;
  const end = model.end ?? Math.max(now, model.last ?? now);
  const span = Math.max(end - start, 1);
  const rows = model.rows;

  useEffect(() => {
    const c = canvas.current;
    if (!c) return;
    const width = c.clientWidth;
    const height = rows.length * ROW + 24;
    const ratio = devicePixelRatio || 1;
    c.width = width * ratio;
    c.height = height * ratio;
    c.style.height = `${height}px`;
    const g = c.getContext("2d");
    if (!g) return;
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const plot = Math.max(width - LABEL - 8, 50);
    const x = (t: number) => LABEL + ((t - start) / span) * plot;
    const fill = {
      completed: colour("ok"),
      faulted: colour("bad"),
      cancelled: colour("muted"),
      running: colour("run"),
    };
    g.font = "12px ui-monospace, monospace";
    g.textBaseline = "middle";
    // The time axis.
    g.fillStyle = colour("fg-muted");
    for (let i = 0; i <= 4; i++) {
      const t = (span * i) / 4;
      const px = LABEL + (plot * i) / 4;
      g.fillRect(px, 0, 1, height - 18);
      g.fillText(duration(t), Math.min(px + 2, width - 60), height - 8);
    }
    rows.forEach((task, i) => {
      const y = i * ROW;
      g.fillStyle = colour("fg");
      const label = task.length > 38 ? `…${task.slice(-37)}` : task;
      g.fillText(label, 4, y + ROW / 2);
      for (const bar of model.bars.get(task) ?? []) {
        const x0 = x(bar.start);
        const x1 = x(bar.end ?? end);
        g.fillStyle = fill[bar.outcome ?? "running"];
        g.fillRect(x0, y + 3, Math.max(x1 - x0, 2), ROW - 6);
      }
    });
    g.fillStyle = colour("warn");
    for (const r of model.retries) {
      const i = rows.indexOf(r.task);
      // A retry is decided on the task that catches; mark it on that row if drawn,
      // else on the first row inside it.
      const row = i >= 0 ? i : rows.findIndex((t) => t.startsWith(`${r.task}/`));
      if (row < 0) continue;
      const px = x(r.at);
      g.beginPath();
      g.moveTo(px, row * ROW + 1);
      g.lineTo(px + 5, row * ROW + ROW / 2);
      g.lineTo(px, row * ROW + ROW - 1);
      g.fill();
    }
  });

  if (rows.length === 0) return <p class="empty">No task has started yet.</p>;
  return (
    <div class="timeline">
      <p class="muted">
        {rows.length} tasks over {duration(span)}; bars are attempts (green done, red faulted, blue
        running), triangles retries, gaps between a fault and the next attempt the backoff.
      </p>
      <canvas
        ref={canvas}
        role="img"
        aria-label={`Timeline of ${rows.length} tasks over ${duration(span)}`}
      />
      <table class="visually-hidden">
        <caption>Attempts by task</caption>
        <tbody>
          {rows.slice(0, 200).map((task) => {
            const bars = model.bars.get(task) ?? [];
            return (
              <tr>
                <th scope="row">{task}</th>
                <td>
                  {bars.length} attempts, {bars.filter((b) => b.outcome === "faulted").length} faulted
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
