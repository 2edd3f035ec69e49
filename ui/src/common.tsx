import { createContext } from "preact";
import { useCallback, useContext, useEffect, useState } from "preact/hooks";
import { ApiError, type Me } from "./api";

// ---------------------------------------------------------------- routing (hash based, so
// any static host and any API Gateway stage prefix serve every page from one index.html)
export interface Route { parts: string[]; query: URLSearchParams }

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?", 2);
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(qs ?? "") };
}

export function href(path: string, query: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const s = q.toString();
  return `#/${path.replace(/^\//, "")}${s ? `?${s}` : ""}`;
}

export function navigate(path: string, query: Record<string, string | undefined> = {}): void {
  window.location.hash = href(path, query);
}

// ---------------------------------------------------------------- who may do what
export interface Session { me: Me; project: string; setProject: (p: string) => void }
export const SessionContext = createContext<Session>({ me: { user: "", project: "default", role: null, actions: [] }, project: "default", setProject: () => {} });
export const useSession = () => useContext(SessionContext);
/** Whether the caller's role allows ``action`` (from GET /me); the UI hides what is not. */
export const useCan = () => {
  const { me } = useSession();
  return (action: string) => me.actions.includes(action);
};

// ---------------------------------------------------------------- data loading
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | null; error: ApiError | Error | null; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => { if (live) { setData(d); setError(null); } },
      (e: Error) => { if (live) setError(e); },
    );
    return () => { live = false; };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

export function StateBadge({ state }: { state: string | null | undefined }) {
  if (!state) return <span class="muted">—</span>;
  return <span class={`badge s-${state}`} data-state={state}>{state.replace("_", " ")}</span>;
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
