import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, apiToken, forgetLayoutWriters, mayStoreLayouts, onUnauthorized, prefetchRun, type Me } from "./api";
import { SessionContext, href, parseHash, type Route } from "./common";
import { AlertsPage } from "./pages/Alerts";
import { ApplyPage, forgetApplyDraft } from "./pages/Apply";
import { BackfillPage } from "./pages/Backfill";
import { ConnectionsPage } from "./pages/Connections";
import { RunPage } from "./pages/Run";
import { RunsPage } from "./pages/Runs";
import { ResourcesPage } from "./pages/Resources";
import { PoolPage, PoolsPage } from "./pages/Pools";
import { SecretsPage } from "./pages/Secrets";
import { VariablesPage } from "./pages/Variables";
import { WorkflowPage } from "./pages/Workflow";
import { WorkflowsPage } from "./pages/Workflows";
import "./styles.css";

const PROJECT_KEY = "stratoflow.project";

function App() {
  const [route, setRoute] = useState<Route>(parseHash(window.location.hash));
  const [me, setMe] = useState<Me | null>(null);
  const [meError, setMeError] = useState<ApiError | Error | null>(null);
  const [signIn, setSignIn] = useState(0);
  const [project, setProjectState] = useState(localStorage.getItem(PROJECT_KEY) || "default");
  const setProject = (p: string) => {
    localStorage.setItem(PROJECT_KEY, p);
    setProjectState(p);
  };
  useEffect(() => {
    const onHash = () => setRoute(parseHash(window.location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const asking = useRef(false); // /me is being asked: a 401 meanwhile is its own to report
  useEffect(() => {
    // what the caller may do depends on their role in the project. Only the newest request's
    // answer is applied: one asked before it (another project, another token) is dropped
    let newest = true;
    asking.current = true;
    api.me(project).then(
      (m) => {
        mayStoreLayouts(m.project, m.actions.includes("workflow.apply"));
        if (newest) { asking.current = false; setMe(m); setMeError(null); }
      },
      (e: Error) => {
        if (!newest) return;
        asking.current = false;
        setMe(null);
        setMeError(e);
        if (e instanceof ApiError && e.status === 401) forgetApplyDraft(); // the sign-in form shows
      },
    );
    return () => { newest = false; };
  }, [project, signIn]);
  // the user leaves: their Apply draft is forgotten (the tab's next user must not see it),
  // no page of theirs stays open meanwhile, and /me is asked again
  const userChanged = () => {
    forgetApplyDraft();
    forgetLayoutWriters();
    setMe(null);
    setMeError(null);
    setSignIn((n) => n + 1);
  };
  const signOut = () => {
    apiToken.clear();
    userChanged();
  };
  // signed out, or in as someone else, in another tab: the token is every tab's, so this
  // tab's user has changed too (the draft, in this tab's session storage, is this tab's to forget)
  useEffect(() => apiToken.onChangeElsewhere(userChanged), []);
  // the actions of the selected project's role: until its /me answers, none (not the ones
  // of the project selected before)
  const known = !!me && me.project === project;
  const actions = known && me ? me.actions : [];
  // a 401 to any request (a token revoked or expired while a page is open) asks /me again:
  // if it too answers 401, the sign-in form shows, whatever page is open
  useEffect(() => onUnauthorized(() => { if (!asking.current) setSignIn((n) => n + 1); }), []);
  const [section, arg] = route.parts;
  let page;
  if (!me && meError instanceof ApiError && meError.status === 401) page = <TokenForm message={meError.message} onSaved={() => setSignIn((n) => n + 1)} />;
  else if (!me) page = meError ? <p class="error">Cannot reach the API: {meError.message}</p> : <p class="muted">Loading…</p>;
  else if (section === "workflows" && arg) page = <WorkflowPage name={arg} query={route.query} key={arg} />;
  else if (section === "runs" && arg) page = <RunPage id={arg} query={route.query} key={arg} />;
  else if (section === "backfills" && arg) page = <BackfillPage id={arg} key={arg} />;
  else if (section === "runs") page = <RunsPage query={route.query} />;
  else if (section === "apply") page = <ApplyPage />;
  else if (section === "alerts") page = <AlertsPage query={route.query} />;
  else if (section === "secrets") page = <SecretsPage />;
  else if (section === "variables") page = <VariablesPage />;
  else if (section === "resources") page = <ResourcesPage />;
  else if (section === "connections") page = <ConnectionsPage />;
  else if (section === "pools" && arg) page = <PoolPage name={arg} query={route.query} key={`${arg}?${route.query}`} />;
  else if (section === "pools") page = <PoolsPage />;
  else page = <WorkflowsPage />;
  const active = (s: string) => ((section ?? "") === s || (s === "" && section === "workflows") ? "active" : "");
  return (
    <SessionContext.Provider value={{ me: me ? { ...me, actions } : { user: "", project, role: null, actions: [] }, project, setProject, known }}>
      <header class="top">
        <a class="brand" href={href("")}>Stratoflow</a>
        <nav>
          <a class={active("")} href={href("")}>Workflows</a>
          <a class={active("runs")} href={href("runs")}>Runs</a>
          {actions.includes("workflow.apply") && <a class={active("apply")} href={href("apply")}>Apply</a>}
          <a class={active("alerts")} href={href("alerts")}>Alerts</a>
          <a class={active("connections")} href={href("connections")}>Connections</a>
          <a class={active("pools")} href={href("pools")}>Pools</a>
          <a class={active("variables")} href={href("variables")}>Variables</a>
          {actions.includes("secrets.edit") && <a class={active("secrets")} href={href("secrets")}>Secrets</a>}
          <a class={active("resources")} href={href("resources")}>Resources</a>
        </nav>
        <span class="spacer" />
        <label class="project">project{" "}
          <ProjectBox project={project} setProject={setProject} />
        </label>
        {me && <span class="muted small user" title={me.role ? `${me.role} in ${me.project}` : "no role in this project"}>{me.user}</span>}
        {apiToken.get() && (
          <button type="button" class="link small" onClick={signOut}>sign out</button>
        )}
      </header>
      <main>{page}</main>
    </SessionContext.Provider>
  );
}

/** The project box. What the user types is theirs until they commit it (Enter, or leaving the
 * box): the App re-renders meanwhile (its /me answers, the route changes) and a box bound to
 * the selected project would put that project back over the text, so Enter then changed
 * nothing. A project selected elsewhere (a run page adopting its own) replaces the text. */
function ProjectBox({ project, setProject }: { project: string; setProject: (p: string) => void }) {
  const [text, setText] = useState(project);
  useEffect(() => setText(project), [project]);
  return (
    <input aria-label="Project" value={text} size={10}
      onInput={(e) => setText((e.target as HTMLInputElement).value)}
      onChange={(e) => { const p = (e.target as HTMLInputElement).value.trim() || "default"; setText(p); setProject(p); }} />
  );
}

function TokenForm({ message, onSaved }: { message: string; onSaved: () => void }) {
  const [value, setValue] = useState("");
  return (
    <form class="card" onSubmit={(e) => { e.preventDefault(); if (value.trim()) { apiToken.set(value.trim()); onSaved(); } }}>
      <h1>Sign in</h1>
      <p class="muted">{message}</p>
      <label>API token
        <input type="password" autocomplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} aria-label="API token" />
      </label>
      <button type="submit" class="primary">Use this token</button>
    </form>
  );
}

// a run page: its graph's data is asked for now, not after /me and the first render
const opened = parseHash(window.location.hash).parts;
if (opened[0] === "runs" && opened[1]) prefetchRun(opened[1]);

render(<App />, document.getElementById("app") as HTMLElement);
