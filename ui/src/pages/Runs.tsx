import { api, fmtTime, RUN_STATES, type RunView } from "../api";
import { Elapsed, ErrorBox, StateBadge, href, navigate, useLoad, useProjectParams, useSession } from "../common";

/** How often the runs and workflows lists ask again while the tab is visible. */
export const REFRESH_MS = 5000;

export function RunTable({ runs, showWorkflow = true }: { runs: RunView[]; showWorkflow?: boolean }) {
  return (
    <div class="table-wrap">
      <table data-testid="runs">
        <thead>
          <tr><th>Run</th>{showWorkflow && <th>Workflow</th>}<th>State</th><th>Progress</th><th>Started</th><th>Duration</th><th>Trigger</th></tr>
        </thead>
        <tbody>
          {runs.map((r) => (
            <tr key={r.id}>
              <td><a href={href(`runs/${encodeURIComponent(r.id)}`)} class="mono run-id">{r.id}</a></td>
              {showWorkflow && <td><a href={href(`workflows/${encodeURIComponent(r.workflow)}`)}>{r.workflow}</a> <span class="muted small">v{r.version}</span></td>}
              <td><StateBadge state={r.state} /></td>
              <td>{r.tasks_done}/{r.tasks_total}{r.tasks_failed > 0 && <span class="fail"> · {r.tasks_failed} failed</span>}</td>
              <td>{fmtTime(r.started_at ?? r.created_at)}</td>
              <td><Elapsed started={r.started_at} ended={r.ended_at} duration={r.duration_seconds} /></td>
              <td>{r.trigger}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function RunsPage({ query }: { query: URLSearchParams }) {
  const { project } = useSession();
  const state = query.get("state") ?? "";
  // the workflow filter and the page (`before`, `prev`) are a project's: another starts on
  // its first page, with all its workflows (the state filter, the same in every project, is kept)
  const mine = useProjectParams(query, (p) => navigate("runs", { project: p, state: state || undefined }, true));
  const workflow = mine ? query.get("workflow") ?? "" : "";
  const before = mine ? query.get("before") ?? "" : "";
  const prev = mine ? query.get("prev") ?? "" : ""; // comma-separated cursor stack for "Newer"
  const { data, error } = useLoad(() => api.runs({ project, workflow, state, before, limit: 25 }), [project, workflow, state, before], REFRESH_MS);
  // the filter's names: asked again after a failed answer (a busy server), until one arrives
  const workflows = useLoad(() => api.workflows(project, undefined, 500), [project], REFRESH_MS, () => true);
  const go = (q: Record<string, string | undefined>) => navigate("runs", { project, workflow, state, ...q });
  const stack = prev ? prev.split(",") : [];
  return (
    <section>
      <div class="page-head"><h1>Runs</h1></div>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>Workflow{" "}
          <select aria-label="Workflow filter" value={workflow} onChange={(e) => go({ workflow: (e.target as HTMLSelectElement).value || undefined, before: undefined, prev: undefined })}>
            <option value="">all</option>
            {(workflows.data?.workflows ?? []).map((w) => <option key={w.name} value={w.name}>{w.name}</option>)}
          </select>
        </label>
        <label>State{" "}
          <select aria-label="State filter" value={state} onChange={(e) => go({ state: (e.target as HTMLSelectElement).value || undefined, before: undefined, prev: undefined })}>
            <option value="">all</option>
            {RUN_STATES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
      </form>
      <ErrorBox error={error} />
      {data && data.runs.length === 0 && <p class="muted">No runs match.</p>}
      {data && data.runs.length > 0 && <RunTable runs={data.runs} />}
      <div class="pager">
        {before && (
          <button type="button" onClick={() => go({ before: stack[stack.length - 1] || undefined, prev: stack.slice(0, -1).join(",") || undefined })}>← Newer</button>
        )}
        {data?.next && (
          <button type="button" onClick={() => go({ before: data.next as string, prev: [...stack, before].filter((x, i) => x || i > 0).join(",") || undefined })}>Older →</button>
        )}
      </div>
    </section>
  );
}
