// What an execution's events add up to: each task's state, each fan-out's counters,
// the timeline's bars, the workers' output, and what the run used. Built by applying
// events in order, so the same code follows a live stream and replays a prefix of it.

import type { CloudEvent } from "./api";
import type { FanOut } from "./components/common";

export type TaskOutcome = "running" | "completed" | "faulted" | "cancelled" | "retrying";

export interface TaskState {
  started: number;
  completed: number;
  faulted: number;
  cancelled: number;
  retried: number;
  last: TaskOutcome;
}

export interface Bar {
  task: string;
  start: number;
  end?: number;
  outcome?: "completed" | "faulted" | "cancelled";
}

export interface OutputLine {
  task: string;
  stream: string;
  text: string;
}

/** Cloud Run's and Cloud Workflows' list prices, as `skein exec cost` uses them. */
export const RATES = { vcpuSecond: 0.000024, gibSecond: 0.0000025, request: 0.0000004, step: 0.00001 };

const T = "io.serverlessworkflow.task.";
const W = "io.serverlessworkflow.workflow.";
const MAX_OUTPUT = 5000;

/** Whether an event of this type ends the workflow (completed, faulted or cancelled). */
export function endsWorkflow(type: string): boolean {
  return type === `${W}completed.v1` || type === `${W}faulted.v1` || type === `${W}cancelled.v1`;
}

export class Model {
  tasks = new Map<string, TaskState>();
  fanOuts = new Map<string, FanOut>();
  /** Rows of the timeline, in the order tasks first started. */
  rows: string[] = [];
  bars = new Map<string, Bar[]>();
  retries: { task: string; at: number; attempt: number }[] = [];
  output: OutputLine[] = [];
  outputDropped = 0;
  cpuSeconds = 0;
  memoryGibSeconds = 0;
  attempts = 0;
  failedAttempts = 0;
  steps = 0;
  start: number | null = null;
  end: number | null = null;
  last: number | null = null;
  applied = 0;

  private state(task: string): TaskState {
    let s = this.tasks.get(task);
    if (!s) {
      s = { started: 0, completed: 0, faulted: 0, cancelled: 0, retried: 0, last: "running" };
      this.tasks.set(task, s);
    }
    return s;
  }

  private close(task: string, at: number, outcome: Bar["outcome"]) {
    // Attempts of one task (loop iterations, retries) are paired first in, first out:
    // events name the task, not the iteration.
    const open = this.bars.get(task)?.find((b) => b.end === undefined);
    if (open) {
      open.end = at;
      open.outcome = outcome;
    }
  }

  apply(e: CloudEvent) {
    this.applied++;
    const at = Date.parse(e.time);
    if (isFinite(at)) {
      if (this.start === null) this.start = at;
      this.last = at;
    }
    const d = e.data ?? {};
    const task: string = d.task ?? "";
    switch (e.type) {
      case `${T}started.v1`: {
        const s = this.state(task);
        s.started++;
        s.last = "running";
        this.steps++;
        if (!this.bars.has(task)) {
          this.bars.set(task, []);
          this.rows.push(task);
        }
        this.bars.get(task)!.push({ task, start: at });
        break;
      }
      case `${T}completed.v1`: {
        const s = this.state(task);
        s.completed++;
        s.last = "completed";
        this.close(task, at, "completed");
        break;
      }
      case `${T}faulted.v1`: {
        const s = this.state(task);
        s.faulted++;
        s.last = "faulted";
        this.close(task, at, "faulted");
        break;
      }
      case `${T}cancelled.v1`: {
        const s = this.state(task);
        s.cancelled++;
        s.last = "cancelled";
        this.close(task, at, "cancelled");
        break;
      }
      case `${T}retried.v1`: {
        const s = this.state(task);
        s.retried++;
        s.last = "retrying";
        this.retries.push({ task, at, attempt: d.attempt ?? 0 });
        break;
      }
      case "dev.skein.task.progress.v1":
        this.fanOuts.set(task, {
          task,
          total: d.total ?? 0,
          done: d.done ?? 0,
          failed: d.failed ?? 0,
          running: d.running ?? 0,
        });
        break;
      case "dev.skein.task.output.v1":
        if (this.output.length >= MAX_OUTPUT) {
          this.output.shift();
          this.outputDropped++;
        }
        this.output.push({ task, stream: d.stream ?? "stdout", text: d.text ?? "" });
        break;
      case "dev.skein.task.usage.v1": {
        this.cpuSeconds += d.cpuSeconds ?? 0;
        this.memoryGibSeconds += d.memoryGibSeconds ?? 0;
        this.attempts++;
        const code = d.code;
        if (!(code === 0 || (typeof code === "number" && code >= 200 && code < 300)))
          this.failedAttempts++;
        break;
      }
    }
    if (endsWorkflow(e.type)) this.end = at;
  }

  cost(): { items: [string, number, number][]; total: number } {
    const items: [string, number, number][] = [
      ["vCPU-seconds", this.cpuSeconds, RATES.vcpuSecond],
      ["GiB-seconds", this.memoryGibSeconds, RATES.gibSecond],
      ["requests", this.attempts, RATES.request],
      ["steps", this.steps, RATES.step],
    ];
    return { items, total: items.reduce((sum, [, q, r]) => sum + q * r, 0) };
  }
}

export function replay(events: CloudEvent[], upTo: number): Model {
  const m = new Model();
  for (let i = 0; i < upTo && i < events.length; i++) m.apply(events[i]);
  return m;
}
