import { useState } from "preact/hooks";
import { api, fmtTime } from "../api";
import { ErrorBox, StateBadge, href, useCan, useLoad, useSession } from "../common";
import { REFRESH_MS } from "./Runs";

export function WorkflowsPage() {
  const { project } = useSession();
  const can = useCan();
  // the cursor stack (back and forth) of the project it was made in: another starts on its first page
  const [paged, setPaged] = useState<{ project: string; after: string[] }>({ project, after: [] });
  const after = paged.project === project ? paged.after : [];
  const setAfter = (stack: string[]) => setPaged({ project, after: stack });
  const cursor = after[after.length - 1];
  const { data, error } = useLoad(() => api.workflows(project, cursor, 50), [project, cursor], REFRESH_MS);
  return (
    <section>
      <div class="page-head">
        <h1>Workflows</h1>
        {can("workflow.apply") && <a class="button" href={href("apply")}>Apply a workflow</a>}
      </div>
      <ErrorBox error={error} />
      {data && data.workflows.length === 0 && !cursor && (
        <p class="muted">No workflows in project “{project}” yet.{can("workflow.apply") && <> <a href={href("apply")}>Apply one</a>.</>}</p>
      )}
      {data && data.workflows.length > 0 && (
        <div class="table-wrap">
          <table data-testid="workflows">
            <thead>
              <tr><th>Name</th><th>Last run</th><th>Next run</th><th>Schedule</th><th>Tasks</th><th>Version</th></tr>
            </thead>
            <tbody>
              {data.workflows.map((w) => (
                <tr key={w.name}>
                  <td>
                    <a href={href(`workflows/${encodeURIComponent(w.name)}`)}>{w.name}</a>
                    {w.description && <div class="muted small description" title={w.description}>{w.description}</div>}
                  </td>
                  <td>
                    {w.last_run ? (
                      <a href={href(`runs/${encodeURIComponent(w.last_run.id)}`)}><StateBadge state={w.last_run.state} /></a>
                    ) : <span class="muted">never</span>}
                    {w.last_run && <div class="muted small">{fmtTime(w.last_run.created_at)}</div>}
                  </td>
                  <td>
                    {w.paused && w.schedule ? <span class="badge s-paused">paused</span> : fmtTime(w.next_run_at)}
                    {w.schedule_error && (
                      <div><span class="badge s-failed" title={w.schedule_error}>schedule error</span>
                        <div class="muted small">{w.schedule_error}</div></div>
                    )}
                  </td>
                  <td><code>{w.schedule ? w.schedule.cron : "—"}</code>{w.schedule?.timezone && <span class="muted small"> {w.schedule.timezone}</span>}</td>
                  <td>{w.tasks}</td>
                  <td>v{w.version}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div class="pager">
        {after.length > 0 && <button type="button" onClick={() => setAfter(after.slice(0, -1))}>← Previous</button>}
        {data?.next && <button type="button" onClick={() => setAfter([...after, data.next as string])}>Next →</button>}
      </div>
    </section>
  );
}
