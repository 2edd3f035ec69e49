// A run: its graph coloured by task state (live), a Gantt chart, the task list, and the
// selected task's attempts, outputs and log. Polls while the run is not finished.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, firstRequests, fmtClock, fmtDuration, fmtTime, refreshRun, refreshStates, TERMINAL_RUN, type FirstRequests, type HeldStates, type MarkState, type RunDetail, type RunState, type RunStates, type TaskState, type Timeline, type TaskView } from "../api";
import { ActionButton, Elapsed, ErrorBox, StateBadge, href, navigate, plural, useCan, useOwnProject, useSession } from "../common";
import { ansiText } from "../ansi";
import { Gantt } from "../Gantt";
import { GraphView } from "../graph/GraphView";
import { pollWhileVisible } from "../poll";
import { VirtualList } from "../VirtualList";

const TABS = ["graph", "gantt", "tasks"] as const;

/** The run, polled while it is live. Until something needs the whole view (`whole`: the
 * Gantt or task tab, a task's panel), only the task states are kept, by deltas since the
 * states view's revision; then the whole view once, and its deltas. */
function useLiveRun(id: string, first: FirstRequests, whole: boolean) {
  const [detail, setDetail] = useState<RunDetail | null>(null);
  // the run and its task states: drawn with the layout, and all the graph needs
  const [brief, setBrief] = useState<RunStates | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [tick, setTick] = useState(0);
  // the view held and its ETag: each poll asks only for what changed since (a 304 if nothing)
  const held = useRef<{ detail: RunDetail; etag: string | null } | null>(null);
  // the states held, by revision (null: none yet, or a server without revisions)
  const heldStates = useRef<HeldStates | null>(null);
  useEffect(() => {
    let live = true;
    let stop = () => {};
    if (held.current && held.current.detail.run.id !== id) held.current = null;
    if (heldStates.current && heldStates.current.run.id !== id) heldStates.current = null;
    // one poll: false once the run has finished (nothing more to ask)
    const poll = async (): Promise<boolean> => {
      try {
        let state: RunState;
        if (whole || !heldStates.current) {
          const got = await refreshRun(id, held.current);
          if (!live) return false;
          if (got !== held.current) {
            held.current = got;
            setDetail(got.detail);
          }
          state = got.detail.run.state;
        } else {
          const got = await refreshStates(id, heldStates.current);
          if (!live) return false;
          if (got !== heldStates.current) {
            heldStates.current = got;
            setBrief({ run: got.run, revision: got.revision, states: got.states });
          }
          state = got.run.state;
        }
        setError(null);
        return !TERMINAL_RUN.includes(state);
      } catch (e) {
        if (live) setError(e as Error);
        return live;
      }
    };
    first.states.then((b) => {
      if (!live || heldStates.current) return; // polled since: newer than the first states
      setBrief(b);
      if (b.revision != null) heldStates.current = { run: b.run, states: b.states, revision: b.revision, etag: null };
    }, () => undefined);
    // the first poll once the graph's data is in: the server answers one request at a time,
    // and a whole view, the largest, would hold those two back. Then polls again soon, but
    // never spending more than a third of the time fetching; none while the tab is hidden
    Promise.allSettled([first.states, first.layout]).then(() => {
      if (live) stop = pollWhileVisible(poll, (spent) => Math.max(1000, spent * 3));
    });
    return () => { live = false; stop(); };
  }, [id, tick, whole]);
  return { detail, brief, error, refresh: () => setTick((t) => t + 1) };
}

export function RunPage({ id, query }: { id: string; query: URLSearchParams }) {
  const canInSelected = useCan();
  // a tab the page does not have (a mistyped or old link) opens the first: no pane was shown
  const asked = query.get("tab");
  const tab = (TABS as readonly string[]).includes(asked ?? "") ? (asked as (typeof TABS)[number]) : "graph";
  const selected = query.get("task");
  // the graph's layout and the task states are asked for first, together (or already were,
  // as the script started: prefetchRun); the graph is drawn from them
  const first = useMemo(() => firstRequests(id), [id]);
  // the whole view is fetched once a tab or panel shows more than states, and kept from then on
  const wholeFor = useRef<string | null>(null);
  if (tab !== "graph" || selected) wholeFor.current = id;
  const { detail, brief, error, refresh } = useLiveRun(id, first, wholeFor.current === id);
  const loadLayout = useMemo(() => () => first.layout, [first]);
  const states = useMemo(() => {
    if (!detail) return brief?.states ?? {};
    const out: Record<string, TaskState> = {};
    for (const [t, v] of Object.entries(detail.tasks)) out[t] = v.state;
    return out;
  }, [detail, brief]);
  const go = (q: Record<string, string | undefined>) => navigate(`runs/${encodeURIComponent(id)}`, { tab, task: selected ?? undefined, ...q });
  const selectRef = useRef((task: string) => go({ task }));
  selectRef.current = (task: string) => go({ task });
  const onSelect = useMemo(() => (task: string) => selectRef.current(task), []);

  const r = detail?.run ?? brief?.run;
  // the run's project is selected (its role, its workflow's links); another picked: its runs
  const here = useOwnProject(r?.project ?? null, (p) => navigate("runs", { project: p }));
  const can = (action: string) => here && canInSelected(action);
  if (!r) return <section><ErrorBox error={error} />{!error && <p class="muted">Loading run…</p>}</section>;
  const active = !TERMINAL_RUN.includes(r.state);
  // a finished run that did not succeed whole; a running one with failed tasks (Airflow's
  // Clear of a running DAG run's failed tasks: they rerun while the rest goes on)
  const rerunnable = active ? r.state === "running" && r.tasks_failed > 0 : r.tasks_failed > 0 || r.state !== "succeeded";
  return (
    <section>
      <div class="page-head">
        <h1 class="mono run-title">{r.id}</h1>
        <div class="actions">
          {r.state === "running" && can("run.pause") && <ActionButton label="Pause" run={() => api.runAction(id, "pause")} onDone={refresh} />}
          {r.state === "paused" && can("run.resume") && <ActionButton label="Resume" run={() => api.runAction(id, "resume")} onDone={refresh} />}
          {active && can("run.stop") && <ActionButton label="Stop" danger confirm="Stop this run and kill its running tasks?" run={() => api.runAction(id, "stop")} onDone={refresh} />}
          {rerunnable && can("run.rerun") && <ActionButton label="Rerun failed" run={() => api.rerun(id)} onDone={refresh} />}
        </div>
      </div>
      <div class="run-meta" data-testid="run-meta">
        <StateBadge state={r.state} />
        <span><a href={href(`workflows/${encodeURIComponent(r.workflow)}`, { version: String(r.version), tab: "yaml" })}>{r.workflow} v{r.version}</a></span>
        <span data-testid="progress">{r.tasks_done}/{r.tasks_total} done{r.tasks_failed ? `, ${r.tasks_failed} failed` : ""}{r.tasks_running ? `, ${r.tasks_running} running` : ""}</span>
        {r.logical_date && <span data-testid="logical-date" title={r.logical_date}>logical date {fmtTime(r.logical_date)}</span>}
        <span>started {fmtTime(r.started_at)}</span>
        <Elapsed started={r.started_at} ended={r.ended_at} duration={r.duration_seconds} />
        <span class="muted">trigger: {r.trigger}</span>
        {r.parent_run && (
          <span data-testid="parent-run">sub-workflow of <a class="mono" href={href(`runs/${encodeURIComponent(r.parent_run)}`, { task: r.parent_task ?? undefined })}>{r.parent_run}</a>{r.parent_task ? ` (task ${r.parent_task})` : ""}</span>
        )}
        {active && <span class="live" title="updating live">● live</span>}
      </div>
      {r.error && <p class="error">{r.error}</p>}
      {Object.keys(r.params).length > 0 && <details><summary>Parameters</summary><pre class="code">{JSON.stringify(r.params, null, 2)}</pre></details>}
      <ErrorBox error={error} />
      <div class={selected ? "split" : ""}>
        <div class="main-pane">
          <nav class="tabs" role="tablist">
            {TABS.map((t) => (
              <button type="button" role="tab" aria-selected={tab === t} class={tab === t ? "active" : ""} onClick={() => go({ tab: t })} key={t}>{t}</button>
            ))}
          </nav>
          {/* no ELK layout while the run is live: it would take seconds of CPU from the run */}
          {tab === "graph" && (
            <GraphView layoutKey={`${r.project}/${r.workflow}/${r.version}`} load={loadLayout} states={states} selected={selected} onSelect={onSelect} height={520} refine={!active} />
          )}
          {tab !== "graph" && !detail && <p class="muted">Loading tasks…</p>}
          {tab === "gantt" && detail && <GanttTab detail={detail} onSelect={onSelect} selected={selected} />}
          {tab === "tasks" && detail && <TaskList detail={detail} onSelect={onSelect} selected={selected} />}
        </div>
        {selected && detail?.tasks[selected] && (
          <TaskPanel runId={id} runProject={r.project} taskId={selected} task={detail.tasks[selected]} runState={r.state} onChange={refresh} onClose={() => go({ task: undefined })} />
        )}
        {/* a link naming a task the run does not have (another version's, a typo): said, not a blank half page */}
        {selected && detail && !detail.tasks[selected] && (
          <aside class="task-panel" aria-label={`Task ${selected}`} data-testid="task-panel">
            <div class="page-head">
              <h2 class="mono">{selected}</h2>
              <button type="button" class="link" onClick={() => go({ task: undefined })} aria-label="Close task">✕</button>
            </div>
            <p class="error" role="alert">Run {r.id} has no task {selected} (version {r.version} of {r.workflow}).</p>
          </aside>
        )}
      </div>
    </section>
  );
}

/** The Gantt chart's data, from the live run view: no poll of its own, and it moves only
 * with what the run view's deltas bring (GET /runs/{id}/timeline gives the same shape). */
export function timelineOf(detail: RunDetail): Timeline {
  let start: number | null = null;
  let end: number | null = null;
  let running = false;
  const tasks = Object.entries(detail.tasks).map(([taskId, t]) => {
    for (const a of t.history) {
      if (a.started_at) start = Math.min(start ?? Infinity, Date.parse(a.started_at));
      if (a.ended_at) end = Math.max(end ?? -Infinity, Date.parse(a.ended_at));
      else running = true;
    }
    return {
      task_id: taskId,
      state: t.state,
      attempts: t.history.map(({ attempt, state, started_at, ended_at, duration_seconds }) => ({ attempt, state, started_at, ended_at, duration_seconds })),
    };
  });
  if (running) end = Math.max(end ?? -Infinity, Date.now());
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return { run: detail.run, start: iso(start ?? (detail.run.started_at ? Date.parse(detail.run.started_at) : null)), end: iso(end), tasks };
}

function GanttTab({ detail, onSelect, selected }: { detail: RunDetail; onSelect: (t: string) => void; selected: string | null }) {
  const timeline = useMemo(() => timelineOf(detail), [detail]);
  return <Gantt timeline={timeline} onSelect={onSelect} selected={selected} />;
}

const taskKey = ([id]: [string, TaskView]) => id;

function TaskList({ detail, onSelect, selected }: { detail: RunDetail; onSelect: (t: string) => void; selected: string | null }) {
  const [filter, setFilter] = useState("");
  const rows = Object.entries(detail.tasks).filter(([id, t]) => !filter || t.state === filter || id.includes(filter));
  return (
    <div>
      <div class="filters">
        <input type="search" placeholder="Filter by id or state" aria-label="Filter tasks" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        <span class="muted">{plural(rows.length, "task")}</span>
      </div>
      <VirtualList
        label="Tasks"
        items={rows}
        keyOf={taskKey}
        rowHeight={30}
        height={480}
        onOpen={([id]) => onSelect(id)}
        selected={selected}
        row={([id, t]) => (
          <div class={`task-row${id === selected ? " selected" : ""}`}>
            <span class="mono">{id}</span>
            <StateBadge state={t.state} />
            <span class="muted small">try {t.attempts}</span>
            <span class="muted small">{fmtDuration(t.duration_seconds)}</span>
          </div>
        )}
      />
    </div>
  );
}

/** What a task's action will do, asked before it is done (as Stop asks). */
function markQuestion(runId: string, taskId: string, task: TaskView, state: MarkState, runState: RunState): string {
  const kill = task.state === "running" ? " Its running attempt is killed." : "";
  const final = state === "failed" ? " It is not retried." : "";
  const again = TERMINAL_RUN.includes(runState) ? " The run is finished: it runs again if anything is left to run." : "";
  return `Mark task ${taskId} of run ${runId} ${state}?${kill}${final} The tasks downstream of it are decided again, and may start.${again}`;
}

function rerunQuestion(runId: string, taskId: string, task: TaskView, runState: RunState): string {
  const child = task.child_run ? ` Its child run ${task.child_run} runs again whole.` : "";
  const live = TERMINAL_RUN.includes(runState) ? "" : " What of them runs is killed first; the run's other tasks go on.";
  return `Rerun task ${taskId} of run ${runId} and every task downstream of it? They run again (their earlier attempts and logs are kept).${live}${child}`;
}

/** Why the API refuses to rerun from this task (null: it takes it): a run must be running or
 * finished, and in a running run the task must have ended, run, or wait for a retry. */
function rerunFromRefused(runId: string, runState: RunState, taskId: string, task: TaskView): string | null {
  if (TERMINAL_RUN.includes(runState)) return null;
  if (runState !== "running") return `run ${runId} is ${runState}; rerun needs a running or finished run${runState === "paused" ? " (resume it first)" : ""}`;
  if (task.state === "waiting" || task.state === "queued") return `task ${taskId} of run ${runId} is ${task.state}: it has not run yet, so there is nothing to rerun`;
  return null;
}

function TaskPanel({ runId, runProject, taskId, task, runState, onChange, onClose }: { runId: string; runProject: string; taskId: string; task: TaskView; runState: RunState; onChange: () => void; onClose: () => void }) {
  const runActive = !TERMINAL_RUN.includes(runState);
  const { project } = useSession();
  const canInSelected = useCan();
  // the role in the run's project (see RunPage), none while another is selected
  const can = (action: string) => runProject === project && canInSelected(action);
  const attempts = task.history.map((a) => a.attempt);
  const [attempt, setAttempt] = useState<number | null>(null);
  const shown = attempt ?? attempts[attempts.length - 1] ?? null;
  useEffect(() => setAttempt(null), [taskId]);
  const done = ["succeeded", "failed", "skipped", "upstream_failed", "stopped"].includes(task.state);
  return (
    <aside class="task-panel" aria-label={`Task ${taskId}`} data-testid="task-panel">
      <div class="page-head">
        <h2 class="mono">{taskId}</h2>
        <button type="button" class="link" onClick={onClose} aria-label="Close task">✕</button>
      </div>
      <div class="run-meta">
        <StateBadge state={task.state} />
        <span>{task.attempts} attempt{task.attempts === 1 ? "" : "s"}</span>
        <Elapsed started={task.started_at} ended={task.ended_at} duration={task.duration_seconds} />
        {task.next_try_at && <span>next try {fmtTime(task.next_try_at)}</span>}
        {task.child_run && (
          <span data-testid="child-run">child run <a class="mono" href={href(`runs/${encodeURIComponent(task.child_run)}`)}>{task.child_run}</a></span>
        )}
      </div>
      {task.error && <p class="error">{task.error}</p>}
      <div class="actions">
        {/* as the API takes it (409 otherwise: shown, disabled, with its reason) */}
        {can("run.rerun") && (done || runActive) && (
          <ActionButton label="Rerun from here" disabledReason={rerunFromRefused(runId, runState, taskId, task)}
            confirm={rerunQuestion(runId, taskId, task, runState)} run={() => api.rerun(runId, taskId)} onDone={onChange} />
        )}
        {can("task.mark") && task.state !== "succeeded" && <ActionButton label="Mark succeeded" confirm={markQuestion(runId, taskId, task, "succeeded", runState)} run={() => api.mark(runId, taskId, "succeeded")} onDone={onChange} />}
        {can("task.mark") && task.state !== "skipped" && <ActionButton label="Mark skipped" confirm={markQuestion(runId, taskId, task, "skipped", runState)} run={() => api.mark(runId, taskId, "skipped")} onDone={onChange} />}
        {can("task.mark") && task.state !== "failed" && <ActionButton label="Mark failed" confirm={markQuestion(runId, taskId, task, "failed", runState)} run={() => api.mark(runId, taskId, "failed")} onDone={onChange} />}
      </div>
      {task.history.length > 0 && (
        <div class="table-wrap">
          <table data-testid="attempts">
            <thead><tr><th>#</th><th>State</th><th>Started</th><th>Duration</th><th>Exit</th></tr></thead>
            <tbody>
              {task.history.map((a) => (
                <tr key={a.attempt} class={a.attempt === shown ? "selected" : ""} onClick={() => setAttempt(a.attempt)}>
                  <td><button type="button" class="link" aria-pressed={a.attempt === shown} aria-label={`Show attempt ${a.attempt}`}
                    onClick={(e) => { e.stopPropagation(); setAttempt(a.attempt); }}>{a.attempt}</button></td><td><StateBadge state={a.state} /></td><td title={a.started_at ?? ""}>{fmtClock(a.started_at)}</td>
                  <td>{fmtDuration(a.duration_seconds)}</td><td>{a.exit_code ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {Object.keys(task.outputs).length > 0 && (
        <>
          <h3>Outputs</h3>
          <pre class="code" data-testid="outputs">{JSON.stringify(task.outputs, null, 2)}</pre>
        </>
      )}
      {task.child_run
        ? <p class="muted" data-testid="child-run-logs">A sub-workflow task has no log of its own: the child run's tasks have theirs.</p>
        : shown !== null && <LogView runId={runId} taskId={taskId} attempt={shown} follow={runActive && !done} />}
    </aside>
  );
}

function LogView({ runId, taskId, attempt, follow }: { runId: string; taskId: string; attempt: number; follow: boolean }) {
  const [text, setText] = useState("");
  const [next, setNext] = useState(0);
  const [size, setSize] = useState(0);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const offset = useRef(0);
  const followed = useRef(false);
  // reads one at a time, each from where the one before ended (two at once read the same
  // offset and both appended their text); a read for an attempt no longer shown is dropped
  const chain = useRef<Promise<void>>(Promise.resolve());
  const shown = useRef(0);
  const pending = useRef(0);
  const load = (reset: boolean): Promise<void> => {
    const generation = reset ? ++shown.current : shown.current;
    pending.current += 1;
    chain.current = chain.current.then(async () => {
      if (generation !== shown.current) return;
      setBusy(true);
      try {
        const page = await api.log(runId, taskId, attempt, reset ? 0 : offset.current);
        if (generation !== shown.current) return;
        offset.current = page.next;
        setText((old) => (reset ? page.text : old + page.text));
        setNext(page.next);
        setSize(page.size);
        setError(null);
      } catch (e) {
        if (generation === shown.current) setError(e as Error);
      } finally {
        setBusy(false);
      }
    }).finally(() => { pending.current -= 1; });
    return chain.current;
  };
  useEffect(() => {
    offset.current = 0;
    followed.current = false; // another attempt's log: nothing of it was followed yet
    setText("");
    load(true);
  }, [runId, taskId, attempt]);
  useEffect(() => {
    if (follow) {
      followed.current = true;
      // from where the last read ended, 1.5 s after it; not while the tab is hidden, and at
      // once when it is shown again (a read already asked for, "Load more", is waited for)
      return pollWhileVisible(() => (pending.current ? chain.current : load(false)), () => 1500, false);
    }
    // followed until now, the attempt has ended: its tail, which the server holds back
    // while the attempt runs (a secret could be split there), is read once more
    if (followed.current) {
      followed.current = false;
      load(false);
    }
    return undefined;
  }, [follow, runId, taskId, attempt]);
  const rendered = useMemo(() => ansiText(text), [text]);
  return (
    <div class="log">
      <h3>Log of attempt {attempt}</h3>
      {error ? <p class="muted">{error.message}</p> : <pre class="code log-text" data-testid="log">{text ? rendered : busy ? "…" : "(empty)"}</pre>}
      {next < size && (
        <button type="button" onClick={() => load(false)} disabled={busy}>
          Load more ({(size - next).toLocaleString("en")} bytes left)
        </button>
      )}
    </div>
  );
}
