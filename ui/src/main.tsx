// The dashboard's shell: login, navigation, theme and keyboard shortcuts around the
// page the route names.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./styles.css";
import { type Whoami, check, setSession, setToken, token, whenUnauthorized } from "./api";
import { href, intercept, navigate, useRoute } from "./router";
import { Executions } from "./pages/Executions";
import { Execution } from "./pages/Execution";
import { Workflows, Workflow, NewWorkflow } from "./pages/Workflows";
import { Server } from "./pages/Server";

type Theme = "system" | "light" | "dark";

function applyTheme(theme: Theme) {
  const dark =
    theme === "dark" || (theme === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}

function Login({ reason, onDone }: { reason: string | null; onDone: (who: Whoami) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(reason);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    const who = await check(value.trim()).catch(
      (e): Whoami => ({ authenticated: false, reason: String(e) }),
    );
    setBusy(false);
    if (!who.authenticated) {
      setError(who.reason ?? "The server did not accept the token.");
      return;
    }
    setToken(value.trim());
    onDone(who);
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">skein</h1>
        <p>This server asks for a token. Give one of its API tokens (or an ID token its OIDC issuers sign); it is kept in this tab only.</p>
        <label for="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          autoFocus
          required
        />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

const SHORTCUTS: [string, string][] = [
  ["g e", "Executions"],
  ["g w", "Workflows"],
  ["g s", "Server"],
  ["/", "Search executions by id"],
  ["j / k", "Next / previous row"],
  ["Enter", "Open the selected row"],
  ["x", "Select the row (for bulk cancel)"],
  ["t", "Switch theme"],
  ["?", "This help"],
];

function App() {
  const route = useRoute();
  // null: checking; string: the login page with this reason; true: signed in.
  const [auth, setAuth] = useState<null | string | true>(null);
  const [who, setWhoState] = useState<Whoami | null>(null);
  const setWho = (w: Whoami | null) => {
    setSession(w);
    setWhoState(w);
  };
  const [theme, setTheme] = useState<Theme>(
    () => (localStorage.getItem("skein.theme") as Theme) ?? "system",
  );
  const [help, setHelp] = useState(false);

  useEffect(() => {
    whenUnauthorized(() => setAuth("The server did not accept the token (it may have expired)."));
    // The server may need no token, or a proxy in front of it may add one.
    check(token())
      .then((w) => {
        setWho(w);
        // Without a token yet, the login page needs no reason.
        setAuth(w.authenticated ? true : token() ? (w.reason ?? "") : "");
      })
      .catch((e) => setAuth(`The server does not answer: ${e}`));
  }, []);

  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem("skein.theme", theme);
    const media = matchMedia("(prefers-color-scheme: dark)");
    const follow = () => applyTheme(theme);
    media.addEventListener("change", follow);
    return () => media.removeEventListener("change", follow);
  }, [theme]);

  useEffect(() => {
    let pending = "";
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (target.closest("input, textarea, select, [contenteditable]")) return;
      if (e.metaKey || e.ctrlKey || e.altKey) return;
      if (pending === "g") {
        pending = "";
        const to = { e: "/executions", w: "/workflows", s: "/server" }[e.key];
        if (to) {
          e.preventDefault();
          navigate(href(to));
        }
        return;
      }
      if (e.key === "g") pending = "g";
      else if (e.key === "?") setHelp((h) => !h);
      else if (e.key === "Escape") setHelp(false);
      else if (e.key === "t")
        setTheme((t) => (t === "system" ? "dark" : t === "dark" ? "light" : "system"));
      else if (e.key === "/") {
        const search = document.getElementById("search-id");
        if (search) {
          e.preventDefault();
          search.focus();
        }
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);

  if (auth === null) return <main class="loading" aria-busy="true">Connecting…</main>;
  if (auth !== true)
    return (
      <Login
        reason={auth || null}
        onDone={(w) => {
          setWho(w);
          setAuth(true);
        }}
      />
    );

  const current = route.page;
  const link = (to: string, label: string, active: boolean) => (
    <a href={href(to)} aria-current={active ? "page" : undefined}>
      {label}
    </a>
  );
  let page;
  switch (route.page) {
    case "executions":
      page = <Executions query={route.query} />;
      break;
    case "execution":
      page = <Execution id={route.id} tab={route.tab} />;
      break;
    case "workflows":
      page = <Workflows />;
      break;
    case "workflow":
      page = <Workflow name={route.name} revision={route.revision} />;
      break;
    case "new-workflow":
      page = <NewWorkflow />;
      break;
    case "server":
      page = <Server />;
      break;
    default:
      page = (
        <section>
          <h1>Not found</h1>
          <p>
            There is no page at <code>{route.path}</code>. <a href={href("/executions")}>Executions</a>
          </p>
        </section>
      );
  }
  return (
    <div class="shell" onClick={intercept as any}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header>
        <a class="brand" href={href("/executions")}>
          skein
        </a>
        <nav aria-label="Main">
          {link("/executions", "Executions", current === "executions" || current === "execution")}
          {link("/workflows", "Workflows", current === "workflows" || current === "workflow" || current === "new-workflow")}
          {link("/server", "Server", current === "server")}
        </nav>
        <div class="tools">
          <label class="visually-hidden" for="theme">
            Theme
          </label>
          <select
            id="theme"
            value={theme}
            onChange={(e) => setTheme((e.target as HTMLSelectElement).value as Theme)}
          >
            <option value="system">System theme</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
          <button type="button" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts">
            ?
          </button>
          {who?.project && (
            <span class="muted who" title="Project and role of this session">
              {who.project} · {who.role}
            </span>
          )}
          {token() && (
            <button
              type="button"
              onClick={() => {
                setToken(null);
                setAuth("");
              }}
            >
              Sign out
            </button>
          )}
        </div>
      </header>
      <main id="main">{page}</main>
      {help && (
        <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="help-title" onClick={() => setHelp(false)}>
          <div class="dialog" onClick={(e) => e.stopPropagation()}>
            <h2 id="help-title">Keyboard shortcuts</h2>
            <dl class="shortcuts">
              {SHORTCUTS.map(([k, v]) => (
                <>
                  <dt>
                    <kbd>{k}</kbd>
                  </dt>
                  <dd>{v}</dd>
                </>
              ))}
            </dl>
            <button type="button" onClick={() => setHelp(false)} autoFocus>
              Close
            </button>
          </div>
        </div>
      )}
    </div>
  );
}

render(<App />, document.getElementById("app")!);
