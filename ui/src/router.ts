// Routes of the dashboard, as paths under /ui/ so that every page has a link of its
// own (the server answers each with the app's page). Navigation goes through the
// history API; links are ordinary <a href> elements that `intercept` catches.

import { useEffect, useState } from "preact/hooks";

export const BASE = "/ui";

export type Route =
  | { page: "executions"; query: URLSearchParams }
  | { page: "execution"; id: string; tab: string }
  | { page: "workflows" }
  | { page: "workflow"; name: string; revision: string | null }
  | { page: "new-workflow" }
  | { page: "server" }
  | { page: "not-found"; path: string };

export function parse(location: Location): Route {
  const path = location.pathname.startsWith(BASE)
    ? location.pathname.slice(BASE.length)
    : location.pathname;
  const query = new URLSearchParams(location.search);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts[0] === "executions" && parts.length === 1))
    return { page: "executions", query };
  if (parts[0] === "executions" && parts.length >= 2)
    return { page: "execution", id: parts.slice(1).join("/"), tab: query.get("tab") ?? "graph" };
  if (parts[0] === "workflows" && parts.length === 1) return { page: "workflows" };
  if (parts[0] === "workflows" && parts[1] === "new") return { page: "new-workflow" };
  if (parts[0] === "workflows" && parts.length === 2)
    return { page: "workflow", name: parts[1], revision: query.get("revision") };
  if (parts[0] === "server") return { page: "server" };
  return { page: "not-found", path };
}

export function href(path: string, query?: Record<string, string | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
  const s = q.toString();
  return `${BASE}${path}${s ? `?${s}` : ""}`;
}

export function executionHref(id: string, tab?: string) {
  return href(`/executions/${id.split("/").map(encodeURIComponent).join("/")}`, { tab });
}

export function navigate(to: string, replace = false) {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  dispatchEvent(new PopStateEvent("popstate"));
}

/** Follows links inside the app without reloading the page. */
export function intercept(e: MouseEvent) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey)
    return;
  const a = (e.target as Element).closest?.("a");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location));
  useEffect(() => {
    const update = () => setRoute(parse(location));
    addEventListener("popstate", update);
    return () => removeEventListener("popstate", update);
  }, []);
  return route;
}
