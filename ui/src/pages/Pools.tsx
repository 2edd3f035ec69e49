// Pools: every pool the project can use (global ones and its own) with its use, and one pool's
// running and waiting tasks (waiting ones in the order they will be served), each waiting task
// with a Force start button for operators.
import { useState } from "preact/hooks";
import { api, fmtTime, type PoolDetail, type PoolTask } from "../api";
import { ActionButton, ErrorBox, href, useCan, useLoad, useSession } from "../common";

const NAME = "[a-z0-9_\\-]+";

function label(project: string | null, name: string): string {
  return project ? `${project}/${name}` : `${name} (global)`;
}

export function PoolsPage() {
  const { project } = useSession();
  const can = useCan();
  const { data, error, reload } = useLoad(() => api.pools(project), [project]);
  const [name, setName] = useState("");
  const [slots, setSlots] = useState("1");
  const [formError, setFormError] = useState<Error | null>(null);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setFormError(null);
    try {
      await api.putPool(name.trim(), project, Number(slots));
      setName("");
      reload();
    } catch (e) {
      setFormError(e as Error);
    }
  };
  return (
    <section>
      <div class="page-head"><h1>Pools <span class="muted">{project}</span></h1></div>
      <p class="muted">Tasks that name a pool share its slots across all runs; the highest priority waiting task gets a freed slot first.</p>
      <ErrorBox error={error} />
      {data && data.pools.length === 0 && <p class="muted">No pools for project “{project}” yet.</p>}
      {data && data.pools.length > 0 && (
        <div class="table-wrap">
          <table data-testid="pools">
            <thead><tr><th>Pool</th><th>Used</th><th>Slots</th></tr></thead>
            <tbody>
              {data.pools.map((p) => (
                <tr key={`${p.project}/${p.name}`}>
                  <td><a href={href(`pools/${p.name}`, { project: p.project ?? undefined })}>{label(p.project, p.name)}</a></td>
                  <td>{p.used}</td>
                  <td>{p.slots}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {can("pools.edit") && (
        <form class="card" onSubmit={submit} aria-label="Set a pool">
          <label>Name
            <input aria-label="Pool name" class="mono" value={name} required maxLength={128} pattern={NAME} title="lower-case letters, digits, _ or -"
              onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </label>
          <label>Slots
            <input aria-label="Pool slots" type="number" min={1} max={10000} value={slots} required
              onInput={(e) => setSlots((e.target as HTMLInputElement).value)} />
          </label>
          <div><button type="submit" class="primary">Set pool of {project}</button></div>
          <ErrorBox error={formError} />
        </form>
      )}
    </section>
  );
}

/** Whether the caller may force-start a task of ``project``: the selected project's role from
 * the session, another's (a global pool's tasks are of every project the caller reads) from
 * that project's GET /me, asked once per project listed; unknown until it answers (no button). */
function useForceStart(tasks: PoolTask[]): (project: string) => boolean {
  const { project: selected } = useSession();
  const can = useCan();
  const others = [...new Set(tasks.map((t) => t.project))].filter((p) => p !== selected).sort();
  const { data } = useLoad(
    () => Promise.all(others.map((p) => api.me(p).then((m) => [p, m.actions.includes("task.force_start")] as const, () => [p, false] as const))),
    [selected, others.join(",")],
  );
  const allowed = new Map(data ?? []);
  return (p) => (p === selected ? can("task.force_start") : allowed.get(p) === true);
}

function TaskRows({ tasks, waiting, onChange }: { tasks: PoolTask[]; waiting: boolean; onChange: () => void }) {
  const mayForce = useForceStart(waiting ? tasks : []);
  return (
    <tbody>
      {tasks.map((t, i) => (
        <tr key={`${t.run_id}/${t.task_id}`}>
          {waiting && <td>{i + 1}</td>}
          <td><a class="mono" href={href(`runs/${encodeURIComponent(t.run_id)}`)}>{t.run_id}</a></td>
          <td class="mono">{t.task_id}</td>
          <td>{t.workflow}</td>
          <td>{t.priority}</td>
          <td>{t.pool_slots}</td>
          {!waiting && <td>{fmtTime(t.started_at)}</td>}
          {waiting && (
            <td>{mayForce(t.project) && (
              <ActionButton label="Force start" confirm={`Start ${t.task_id} now, ahead of the queue and whatever the free slots?`}
                run={() => api.forceStart(t.run_id, t.task_id)} onDone={onChange} />
            )}</td>
          )}
        </tr>
      ))}
    </tbody>
  );
}

export function PoolPage({ name, query }: { name: string; query: URLSearchParams }) {
  const scope = query.get("project");
  // slots change as tasks end: asked again 3 s after each answer (not in a hidden tab)
  const { data, error, reload } = useLoad<PoolDetail>(() => api.pool(name, scope), [name, scope], 3000);
  return (
    <section>
      <div class="page-head"><h1>Pool <span class="mono">{label(scope, name)}</span></h1></div>
      <ErrorBox error={error} />
      {data && (
        <>
          <p data-testid="pool-use"><strong>{data.used}</strong> of {data.slots} slots used, <strong>{data.waiting ?? 0}</strong> waiting
            {data.hidden > 0 && <span class="muted"> ({data.hidden} of projects you cannot read)</span>}</p>
          <h2>Running</h2>
          {data.running_tasks.length === 0 ? <p class="muted">Nothing holds its slots.</p> : (
            <div class="table-wrap"><table data-testid="pool-running">
              <thead><tr><th>Run</th><th>Task</th><th>Workflow</th><th>Priority</th><th>Slots</th><th>Started</th></tr></thead>
              <TaskRows tasks={data.running_tasks} waiting={false} onChange={reload} />
            </table></div>
          )}
          <h2>Waiting <span class="muted small">in the order they will be served</span></h2>
          {data.waiting_tasks.length === 0 ? <p class="muted">Nothing waits.</p> : (
            <div class="table-wrap"><table data-testid="pool-waiting">
              <thead><tr><th>#</th><th>Run</th><th>Task</th><th>Workflow</th><th>Priority</th><th>Slots</th><th /></tr></thead>
              <TaskRows tasks={data.waiting_tasks} waiting={true} onChange={reload} />
            </table></div>
          )}
        </>
      )}
    </section>
  );
}
