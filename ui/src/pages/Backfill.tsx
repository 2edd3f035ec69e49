import { useState } from "preact/hooks";
import { api, fmtTime, TERMINAL_BACKFILL, type BackfillRequest, type BackfillView, type VersionDetail } from "../api";
import { ActionButton, ErrorBox, StateBadge, href, navigate, useCan, useLoad, useOwnProject, useSession } from "../common";

const DATE_STATES = ["pending", "running", "succeeded", "failed", "stopped", "skipped", "not_run"] as const;

/** The backfill dialog of a workflow: a date range (or a list of days), lanes, order, what to
 * do with dates that already have runs, and parameters. The API checks everything again. */
export function BackfillForm({ wf, onClose }: { wf: VersionDetail; onClose: () => void }) {
  const { project } = useSession();
  const [mode, setMode] = useState<"range" | "dates">("range");
  const [start, setStart] = useState("");
  const [end, setEnd] = useState("");
  const [dates, setDates] = useState("");
  const [parallel, setParallel] = useState(1);
  const [order, setOrder] = useState<"asc" | "desc">("asc");
  const [rerun, setRerun] = useState<"none" | "failed" | "all">("none");
  const [params, setParams] = useState("{}");
  const [dependents, setDependents] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(null);
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(params || "{}") as Record<string, unknown>;
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("must be a JSON object");
    } catch (e) {
      setError(new Error(`params: ${(e as Error).message}`));
      return;
    }
    const body: BackfillRequest = { parallel, order, rerun, params: parsed };
    if (dependents) body.dependents = true;
    if (mode === "range") {
      body.start = start;
      body.end = end;
    } else {
      body.dates = dates.split(/[\s,]+/).filter(Boolean);
    }
    setBusy(true);
    try {
      const made = await api.createBackfill(project, wf.name, body);
      navigate(`backfills/${encodeURIComponent(made.id)}`);
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const zone = wf.schedule?.timezone ?? "UTC";
  return (
    <form class="card trigger" onSubmit={submit} aria-label="Backfill">
      <div class="page-head">
        <h2>Backfill {wf.name}</h2>
        <button type="button" class="link" onClick={onClose} aria-label="Close backfill">✕</button>
      </div>
      <p class="muted small">
        One run per time {wf.schedule ? <>its schedule <span class="mono">{wf.schedule.cron}</span> fires</> : "a day (00:00)"} in
        the range, read in {zone}. A date that already has a run keeps it unless you rerun it.
      </p>
      <div class="filters">
        <label class="choice"><input type="radio" name="mode" checked={mode === "range"} onChange={() => setMode("range")} /> Date range</label>
        <label class="choice"><input type="radio" name="mode" checked={mode === "dates"} onChange={() => setMode("dates")} /> List of days</label>
      </div>
      {mode === "range" ? (
        <div class="filters">
          <label>Start <input type="date" aria-label="Start date" required value={start} onInput={(e) => setStart((e.target as HTMLInputElement).value)} /></label>
          <label>End <input type="date" aria-label="End date" required value={end} onInput={(e) => setEnd((e.target as HTMLInputElement).value)} /></label>
        </div>
      ) : (
        <label>Days (YYYY-MM-DD, separated by commas or spaces)
          <input aria-label="Days" required value={dates} onInput={(e) => setDates((e.target as HTMLInputElement).value)} />
        </label>
      )}
      <div class="filters">
        <label>Parallel lanes <input type="number" aria-label="Parallel lanes" min={1} max={32} value={parallel} onInput={(e) => setParallel(Number((e.target as HTMLInputElement).value))} /></label>
        <label>Order <select aria-label="Order" value={order} onChange={(e) => setOrder((e.target as HTMLSelectElement).value as "asc" | "desc")}>
          <option value="asc">oldest first</option><option value="desc">newest first</option>
        </select></label>
        <label>Dates with runs <select aria-label="Rerun" value={rerun} onChange={(e) => setRerun((e.target as HTMLSelectElement).value as "none" | "failed" | "all")}>
          <option value="none">keep them</option><option value="failed">rerun failed ones</option><option value="all">rerun all</option>
        </select></label>
      </div>
      <label>Parameters (JSON)
        <textarea rows={3} value={params} onInput={(e) => setParams((e.target as HTMLTextAreaElement).value)} aria-label="Backfill parameters" spellcheck={false} />
      </label>
      <label class="choice">
        <input type="checkbox" aria-label="Include dependent workflows" checked={dependents} onChange={(e) => setDependents((e.target as HTMLInputElement).checked)} />
        {" "}Include dependent workflows: also backfill, on their own schedules' dates in the range, every workflow whose dependency tasks wait on {wf.name} (transitively, each once)
      </label>
      <button type="submit" class="primary" disabled={busy}>Start the backfill</button>
      <ErrorBox error={error} />
    </form>
  );
}

export function BackfillCounts({ b }: { b: BackfillView }) {
  return (
    <span class="small">
      {DATE_STATES.filter((s) => b.counts[s]).map((s) => <span key={s} class="count"><StateBadge state={s} /> {b.counts[s]} </span>)}
    </span>
  );
}

export function BackfillTable({ backfills }: { backfills: BackfillView[] }) {
  return (
    <div class="table-wrap">
      <table data-testid="backfills">
        <thead><tr><th>Backfill</th><th>State</th><th>Dates</th><th>Lanes</th><th>Created</th><th>By</th></tr></thead>
        <tbody>
          {backfills.map((b) => (
            <tr key={b.id}>
              <td>
                <a class="mono" href={href(`backfills/${encodeURIComponent(b.id)}`)}>{b.id}</a>
                {b.parent && <span class="muted small"> dependent of <a class="mono" href={href(`backfills/${encodeURIComponent(b.parent)}`)}>{b.parent}</a></span>}
                {b.dependents && b.dependents.length > 0 && <span class="muted small"> +{b.dependents.length} dependent{b.dependents.length > 1 ? "s" : ""}</span>}
              </td>
              <td><StateBadge state={b.state} /></td>
              <td><BackfillCounts b={b} /></td>
              <td>{b.parallel}</td>
              <td>{fmtTime(b.created_at)}</td>
              <td>{b.created_by ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const dependentsOf = (b: BackfillView | null) => (b?.dependents ?? []).filter((c): c is BackfillView => typeof c === "object");

/** Whether a backfill and every backfill it included have ended: nothing changes any more. */
const settledBackfill = (b: BackfillView) =>
  [b, ...dependentsOf(b)].every((x) => TERMINAL_BACKFILL.includes(x.state));

/** A backfill's progress by date, refreshed every two seconds until it ends. */
export function BackfillPage({ id }: { id: string }) {
  const canInSelected = useCan();
  // asked again 2 s after each answer (not in a hidden tab) until it has settled
  const { data: b, error, reload } = useLoad(() => api.backfill(id), [id], 2000, settledBackfill);
  // the backfill's project is selected (its role, its workflow's link); another picked: its workflows
  const here = useOwnProject(b?.project ?? null, () => navigate(""));
  const can = (action: string) => here && canInSelected(action);
  const children = dependentsOf(b);
  const settled = b ? settledBackfill(b) : false;
  return (
    <section>
      <div class="page-head">
        <h1>Backfill {b && <a href={href(`workflows/${encodeURIComponent(b.workflow)}`)}>{b.workflow}</a>} {b && <StateBadge state={b.state} />}</h1>
        {/* its own dates done, the operations still reach the dependents it included */}
        {b && !settled && can("run.trigger") && (
          <div class="actions">
            {[b, ...children].some((x) => x.state === "running") && <ActionButton label="Pause" run={() => api.backfillAction(id, "pause")} onDone={reload} />}
            {[b, ...children].some((x) => x.state === "paused") && <ActionButton label="Resume" run={() => api.backfillAction(id, "resume")} onDone={reload} />}
            <ActionButton label="Cancel" danger confirm="Cancel this backfill and stop the runs it started?" run={() => api.backfillAction(id, "cancel")} onDone={reload} />
          </div>
        )}
      </div>
      <ErrorBox error={error} />
      {b && (
        <>
          <p class="muted">
            <span class="mono">{b.id}</span> · new runs v{b.version} · {b.parallel} lane{b.parallel > 1 ? "s" : ""} · {b.order === "asc" ? "oldest first" : "newest first"} · dates with runs: {b.rerun === "none" ? "kept" : `rerun ${b.rerun}`} · created {fmtTime(b.created_at)}{b.created_by ? ` by ${b.created_by}` : ""}
          </p>
          <p data-testid="backfill-counts"><BackfillCounts b={b} /></p>
          {b.parent && <p class="muted small">Included by the dependent-mode backfill <a class="mono" href={href(`backfills/${encodeURIComponent(b.parent)}`)}>{b.parent}</a>.</p>}
          <BackfillDates b={b} />
          {children.length > 0 && <h2>Dependent workflows</h2>}
          {children.map((c) => (
            <div key={c.id} data-testid="backfill-dependent" data-workflow={c.workflow}>
              <h3>
                <a href={href(`backfills/${encodeURIComponent(c.id)}`)}>{c.project === b.project ? c.workflow : `${c.project}/${c.workflow}`}</a>{" "}
                <StateBadge state={c.state} /> <BackfillCounts b={c} />
              </h3>
              <BackfillDates b={c} />
            </div>
          ))}
        </>
      )}
    </section>
  );
}

/** One backfill's dates: state, run, lane and error of each. */
function BackfillDates({ b }: { b: BackfillView }) {
  return (
    <div class="table-wrap">
      <table data-testid="backfill-dates">
        <thead><tr><th>Logical date</th><th>State</th><th>Run</th><th>Lane</th><th>Version</th><th>Error</th></tr></thead>
        <tbody>
          {(b.dates ?? []).map((d) => (
            <tr key={d.run_id} data-state={d.state}>
              <td>{fmtTime(d.logical_date)}</td>
              <td><StateBadge state={d.state} /></td>
              <td>{d.state === "pending" || (d.state === "not_run" && !d.run_state) ? <span class="muted mono small">{d.run_id}</span> : <a class="mono small" href={href(`runs/${encodeURIComponent(d.run_id)}`)}>{d.run_id}</a>}</td>
              <td>{d.lane ?? ""}</td>
              <td>{d.version != null ? `v${d.version}` : ""}</td>
              <td class="fail small">{d.error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function WorkflowBackfills({ name }: { name: string }) {
  const { project } = useSession();
  const { data, error } = useLoad(() => api.backfills(project, name), [project, name]);
  return (
    <div>
      <ErrorBox error={error} />
      {data && data.backfills.length === 0 && <p class="muted">No backfills of {name}.</p>}
      {data && data.backfills.length > 0 && <BackfillTable backfills={data.backfills} />}
    </div>
  );
}
