import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, fmtDuration, type Me } from "./api";
import { pollWhileVisible } from "./poll";

// ---------------------------------------------------------------- routing (hash based, so
// any static host and any API Gateway stage prefix serve every page from one index.html)
export interface Route { parts: string[]; query: URLSearchParams }

/** A path segment decoded; one that is not valid percent-encoding (``%zz``, a cut ``%E2%8``)
 * is taken as it is: decodeURIComponent threw on it, and a throw while the script started
 * left the page blank (the API then says what it has under that name: "not found"). */
function decodeSegment(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?", 2);
  return { parts: path.split("/").filter(Boolean).map(decodeSegment), query: new URLSearchParams(qs ?? "") };
}

export function href(path: string, query: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const s = q.toString();
  return `#/${path.replace(/^\//, "")}${s ? `?${s}` : ""}`;
}

/** Goes to a page; ``replace``: in place of the current history entry (a URL corrected, not
 * a step the user took, so Back does not return to it). */
export function navigate(path: string, query: Record<string, string | undefined> = {}, replace = false): void {
  if (!replace) {
    window.location.hash = href(path, query);
    return;
  }
  history.replaceState(history.state, "", href(path, query));
  window.dispatchEvent(new HashChangeEvent("hashchange")); // replaceState announces nothing
}

// ---------------------------------------------------------------- who may do what
/** ``known``: the selected project's /me has answered. Until it has, no action is offered
 * (``me.actions`` is empty) and no page may say the role cannot act: it is not known yet. */
export interface Session { me: Me; project: string; setProject: (p: string) => void; known: boolean }
export const SessionContext = createContext<Session>({ me: { user: "", project: "default", role: null, actions: [] }, project: "default", setProject: () => {}, known: false });
export const useSession = () => useContext(SessionContext);
/** Whether the caller's role allows ``action`` (from GET /me); the UI hides what is not. */
export const useCan = () => {
  const { me } = useSession();
  return (action: string) => me.actions.includes(action);
};

/** Whether a page's URL parameters that belong to a project (a filter naming its workflow or
 * run, a page's cursor) are the selected project's: they belong to the URL's ``project``, or
 * else to the project selected when that URL was opened. When they are another project's
 * (the project was switched, or Back returned to another project's URL) the page must not use
 * them, not even for its first request: ``restart`` then replaces the URL by the page's first
 * page in ``project`` (keeping what is not a project's, e.g. a state filter; naming the
 * project, so the URL is another and is the selected project's). The page's own URLs name
 * ``project`` when they carry such parameters. */
export function useProjectParams(query: URLSearchParams, restart: (project: string) => void): boolean {
  const { project } = useSession();
  const url = query.toString();
  const opened = useRef({ url, project });
  if (opened.current.url !== url) opened.current = { url, project };
  const mine = (query.get("project") ?? opened.current.project) === project;
  useEffect(() => { if (!mine) restart(project); }, [mine, project]);
  return mine;
}

/** A page of one thing whose id names its project (a run, a backfill) opens from a link
 * whatever project is selected; its actions are the caller's role in ITS project, and its
 * links (its workflow) are that project's. So the page selects ``own`` (its project) once it
 * is known, as Apply selects the project it applied to; a project the user picks afterwards
 * leaves the page (``leave``, given that project). True while ``own`` is the selected
 * project: until then the page offers no action. */
export function useOwnProject(own: string | null, leave: (project: string) => void): boolean {
  const { project, setProject } = useSession();
  const adopted = useRef<string | null>(null);
  useEffect(() => {
    if (!own) return;
    if (adopted.current !== own) {
      adopted.current = own;
      if (project !== own) setProject(own);
    } else if (project !== own) {
      leave(project);
    }
  }, [own, project]);
  return own !== null && own === project;
}

// ---------------------------------------------------------------- data loading
/** What ``load`` gives, for the inputs ``deps``. Data loaded for other inputs (another
 * project, filter or page) is never returned: when the inputs change the page shows nothing
 * until the new load answers, and a failed first load shows its error alone, never the data of
 * the project before it (a failed refresh of the same inputs keeps what they showed, the error
 * beside it). ``every``: load again that long (ms) after each answer while the tab is visible,
 * and at once when it becomes visible again, keeping what is shown until the answer
 * (``pollWhileVisible``); ``until``: an answer that ends the polling (a finished backfill). */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], every?: number, until?: (data: T) => boolean): { data: T | null; error: ApiError | Error | null; reload: () => void } {
  const key = JSON.stringify(deps);
  const [got, setGot] = useState<{ key: string; data: T | null; error: ApiError | Error | null }>({ key, data: null, error: null });
  const [tick, setTick] = useState(0);
  const asked = useRef(0);
  useEffect(() => {
    let live = true;
    const fetchNow = () => {
      const seq = ++asked.current; // only the latest request's answer is shown
      return load().then(
        (d) => {
          if (live && seq === asked.current) setGot({ key, data: d, error: null });
          return !until?.(d);
        },
        // a failed refresh keeps what was shown for these inputs, the error beside it
        (e: Error) => { if (live && seq === asked.current) setGot((old) => ({ key, data: old.key === key ? old.data : null, error: e })); },
      );
    };
    if (!every) {
      fetchNow();
      return () => { live = false; };
    }
    const stop = pollWhileVisible(fetchNow, () => every);
    return () => { live = false; stop(); };
  }, [key, tick, every]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const current = got.key === key;
  return { data: current ? got.data : null, error: current ? got.error : null, reload };
}

/** "1 task", "3 tasks". */
export const plural = (n: number, noun: string) => `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}`;

/** A task or run state as words: "up_for_retry" reads "up for retry". */
export const stateLabel = (state: string) => state.replace(/_/g, " ");

/** How long something has run: its ``duration`` once it has one (the API's, for what ended),
 * else, while it runs (``started`` and no ``ended``), the time since ``started``, counted up
 * once a second by this element alone (not the page it is on). */
export function Elapsed({ started, ended, duration }: { started: string | null | undefined; ended: string | null | undefined; duration: number | null | undefined }) {
  const running = (duration === null || duration === undefined) && !!started && !ended;
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!running) return undefined;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [running]);
  const seconds = running ? Math.max(0, (now - Date.parse(started as string)) / 1000) : duration;
  return <span data-testid="elapsed" title={running ? "running for" : undefined}>{fmtDuration(seconds)}</span>;
}

export function StateBadge({ state }: { state: string | null | undefined }) {
  if (!state) return <span class="muted">—</span>;
  return <span class={`badge s-${state}`} data-state={state}>{stateLabel(state)}</span>;
}

export function ErrorBox({ error }: { error: Error | null }) {
  if (!error) return null;
  const problems = error instanceof ApiError ? error.body.problems : [];
  return (
    <div class="error" role="alert">
      <pre>{error.message}</pre>
      {problems.length > 1 && (
        <ul>{problems.map((p) => <li key={p.path + p.message}>{p.path}{p.line ? ` (line ${p.line})` : ""}: {p.message}</li>)}</ul>
      )}
    </div>
  );
}

/** A button that runs an action, shows it is busy, and reports a failure next to it.
 * ``confirm``: asked first; ``disabledReason``: why the action cannot be taken now (the
 * button is shown disabled, the reason as its tooltip). */
export function ActionButton({ label, run, onDone, danger, confirm: ask, disabledReason }: { label: string; run: () => Promise<unknown>; onDone?: () => void; danger?: boolean; confirm?: string; disabledReason?: string | null }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const click = async () => {
    if (ask && !window.confirm(ask)) return;
    setBusy(true);
    setError(null);
    try {
      await run();
      onDone?.();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="action">
      <button type="button" class={danger ? "danger" : ""} disabled={busy || !!disabledReason} title={disabledReason ?? undefined} onClick={click}>{label}</button>
      {error && <span class="error-inline" role="alert">{error}</span>}
    </span>
  );
}
