// The dashboard's client of skein's REST API: requests with the bearer token the user
// logged in with (or none, when the server or a proxy in front of it needs none), and
// server-sent event streams read through fetch, which, unlike EventSource, can send
// that token.

const TOKEN_KEY = "skein.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refusal or failure, with the server's message. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public body: any = null,
  ) {
    super(message);
  }
}

/** Called when the server answers 401: the app shows its login page. */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void) {
  onUnauthorized = f;
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const t = token();
  if (t) h.authorization = `Bearer ${t}`;
  return h;
}

async function refusal(response: Response): Promise<ApiError> {
  const text = await response.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  const message = body?.message ?? (text || response.statusText);
  return new ApiError(response.status, body?.error ?? String(response.status), message, body);
}

export async function request<T = any>(
  method: string,
  path: string,
  body?: unknown,
  extra: Record<string, string> = {},
): Promise<T> {
  const init: RequestInit = { method, headers: headers(extra) };
  if (body !== undefined) {
    (init.headers as Record<string, string>)["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) onUnauthorized();
  if (!response.ok) throw await refusal(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("content-type") ?? "";
  return (type.includes("json") ? response.json() : response.text()) as Promise<T>;
}

export const get = <T = any>(path: string) => request<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown, extra?: Record<string, string>) =>
  request<T>("POST", path, body, extra);

/** Who the session is, once known: pages hide what its role may not do. */
export let session: Whoami | null = null;
export function setSession(who: Whoami | null) {
  session = who;
}

/** Whether the session's role includes `role` (read < run < admin). */
export function may(role: "read" | "run" | "admin"): boolean {
  const order = ["read", "run", "admin"];
  return order.indexOf(session?.role ?? "read") >= order.indexOf(role);
}

export interface Whoami {
  authenticated: boolean;
  project?: string;
  role?: string;
  reason?: string;
}

/**
 * Checks a token (or none: the server may need none, or a proxy in front of it may add
 * one) against the server's `/v1/whoami`, which answers 200 either way.
 */
export async function check(candidate: string | null): Promise<Whoami> {
  const h: Record<string, string> = {};
  if (candidate) h.authorization = `Bearer ${candidate}`;
  const response = await fetch("/v1/whoami", { headers: h });
  if (!response.ok) return { authenticated: false, reason: (await refusal(response)).message };
  return response.json();
}

export interface CloudEvent {
  id: string;
  type: string;
  time: string;
  subject?: string;
  sequence?: number;
  data: any;
}

/**
 * Follows an SSE stream until `signal` aborts, reconnecting with the last event id
 * after a break. `onEvents` gets the events of each chunk of the response together, so
 * that a burst costs one update.
 */
export async function follow(
  path: string,
  onEvents: (events: { id: string; event: CloudEvent }[]) => void,
  signal: AbortSignal,
  onState: (state: "open" | "reconnecting" | "ended" | { error: string }) => void = () => {},
  /** Asked when the server ends the stream (it does once an execution has ended and
   * every event was sent): true stops following, false reconnects from the last id. */
  ended: () => boolean = () => false,
) {
  let last: string | null = null;
  let delay = 500;
  let why = "";
  while (!signal.aborted) {
    try {
      const h = headers({ accept: "text/event-stream" });
      if (last) h["last-event-id"] = last;
      const response = await fetch(path, { headers: h, signal });
      if (response.status === 401) onUnauthorized();
      if (!response.ok || !response.body) {
        const e = await refusal(response);
        onState({ error: e.message });
        if (response.status < 500 && response.status !== 429) return;
        throw e;
      }
      onState("open");
      delay = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const frames = buffer.split(/\r?\n\r?\n/);
        buffer = frames.pop() ?? "";
        const batch: { id: string; event: CloudEvent }[] = [];
        for (const frame of frames) {
          let id = "";
          const data: string[] = [];
          for (const line of frame.split(/\r?\n/)) {
            if (line.startsWith("id:")) id = line.slice(3).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length === 0) continue;
          try {
            batch.push({ id, event: JSON.parse(data.join("\n")) });
          } catch {
            /* a frame that is not an event */
          }
          if (id) last = id;
        }
        if (batch.length) onEvents(batch);
      }
      if (path.includes("follow=false") || ended()) {
        onState("ended");
        return;
      }
      why = "the server ended the stream";
    } catch (e) {
      if (signal.aborted) return;
      why = String(e);
    }
    console.warn(`event stream ${path}: ${why}; reconnecting`);
    onState("reconnecting");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}
