import { useState } from "preact/hooks";
import { api, fmtTime, type VersionDetail } from "../api";
import { ActionButton, ErrorBox, href, navigate, plural, useCan, useLoad, useSession } from "../common";
import { GraphView } from "../graph/GraphView";
import { BackfillForm, WorkflowBackfills } from "./Backfill";
import { REFRESH_MS, RunTable } from "./Runs";

const TABS = ["graph", "yaml", "versions", "diff", "runs", "backfills"] as const;

export function WorkflowPage({ name, query }: { name: string; query: URLSearchParams }) {
  const { project } = useSession();
  const can = useCan();
  // a tab the page does not have (a mistyped or old link) opens the first: no pane was shown
  const asked = query.get("tab");
  const tab = (TABS as readonly string[]).includes(asked ?? "") ? (asked as (typeof TABS)[number]) : "graph";
  const version = Number(query.get("version")) || undefined;
  const { data: wf, error, reload } = useLoad(() => api.workflow(project, name, version), [project, name, version]);
  // an older version's page still triggers and diffs against the real latest version
  const newest = useLoad(() => (version ? api.workflow(project, name) : Promise.resolve(null)), [project, name, version]);
  const latest = version ? newest.data : wf;
  const [triggering, setTriggering] = useState(false);
  const [backfilling, setBackfilling] = useState(false);
  const [picked, setPicked] = useState<string | null>(null);
  const setTab = (t: string) => navigate(`workflows/${encodeURIComponent(name)}`, { tab: t, version: version ? String(version) : undefined });
  return (
    <section>
      <div class="page-head">
        <h1>{name} {wf && <span class="muted">v{wf.version}</span>}</h1>
        <div class="actions">
          {wf && latest && can("run.trigger") && (
            <button type="button" class="primary" onClick={() => setTriggering(!triggering)}>
              {latest.version === wf.version ? "Trigger run" : `Trigger run of v${latest.version} (latest)`}
            </button>
          )}
          {wf && can("run.trigger") && <button type="button" onClick={() => setBackfilling(!backfilling)}>Backfill</button>}
          {wf && wf.schedule && can("workflow.pause") && (
            <ActionButton label={wf.paused ? "Unpause schedule" : "Pause schedule"} run={() => api.pauseWorkflow(project, name, !wf.paused)} onDone={reload} />
          )}
        </div>
      </div>
      {query.get("applied") && <p class="notice" role="status">Applied: {query.get("applied")}</p>}
      <ErrorBox error={error} />
      {wf && (
        <>
          <p class="muted">
            {[
              wf.description,
              wf.schedule && `schedule ${wf.schedule.cron} ${wf.schedule.timezone ?? "UTC"}${wf.paused ? " (paused)" : ""}`,
              plural(wf.tasks, "task"),
              `applied ${fmtTime(wf.created_at)}`,
            ].filter(Boolean).join(" · ")}
          </p>
          {triggering && latest && <TriggerForm wf={latest} viewed={wf.version} />}
          {backfilling && <BackfillForm wf={wf} onClose={() => setBackfilling(false)} />}
          <nav class="tabs" role="tablist">
            {TABS.map((t) => (
              <button type="button" role="tab" aria-selected={tab === t} class={tab === t ? "active" : ""} onClick={() => setTab(t)} key={t}>{t}</button>
            ))}
          </nav>
          {tab === "graph" && (
            <div class={picked && wf.document.tasks[picked] ? "split" : ""}>
              <GraphView layoutKey={`${wf.project}/${wf.name}/${wf.version}`} load={() => api.versionLayout(wf.project, wf.name, wf.version, wf.layout)} selected={picked} onSelect={setPicked} height={520} />
              {picked && wf.document.tasks[picked] && (
                <aside class="task-panel" aria-label={`Task ${picked}`} data-testid="task-definition">
                  <div class="page-head">
                    <h2 class="mono">{picked}</h2>
                    <button type="button" class="link" onClick={() => setPicked(null)} aria-label="Close task">✕</button>
                  </div>
                  <pre class="code">{JSON.stringify(wf.document.tasks[picked], null, 2)}</pre>
                </aside>
              )}
            </div>
          )}
          {tab === "yaml" && <pre class="code" data-testid="yaml">{wf.source}</pre>}
          {tab === "versions" && <Versions name={name} />}
          {tab === "diff" && (latest ? <Diff name={name} latest={latest.version} viewed={wf.version} /> : <ErrorBox error={newest.error} />)}
          {tab === "runs" && <WorkflowRuns name={name} />}
          {tab === "backfills" && <WorkflowBackfills name={name} />}
        </>
      )}
    </section>
  );
}

/** The API triggers a workflow's latest version, so the form is the latest's (`wf`), and says
 * so when the page shows another (`viewed`). */
function TriggerForm({ wf, viewed }: { wf: VersionDetail; viewed: number }) {
  const { project } = useSession();
  const [params, setParams] = useState(JSON.stringify(wf.document.params ?? {}, null, 2));
  const [logical, setLogical] = useState("");
  const [error, setError] = useState<Error | null>(null);
  const zone = wf.schedule?.timezone ?? "UTC";
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(null);
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(params || "{}") as Record<string, unknown>;
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("params must be a JSON object");
    } catch (e) {
      setError(new Error(`params: ${(e as Error).message}`));
      return;
    }
    try {
      // sent as typed (no offset): the server reads it in the schedule's zone, as the CLI's
      // --logical-date and a backfill's dates are read, not in this browser's zone
      const run = await api.trigger(project, wf.name, parsed, logical || undefined);
      navigate(`runs/${encodeURIComponent(run.run.id)}`);
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <form class="card trigger" onSubmit={submit} aria-label="Trigger a run">
      <p class={wf.version === viewed ? "muted" : "notice"} data-testid="trigger-version">
        Starts a run of the latest version, v{wf.version}{wf.version === viewed ? "" : ` (this page shows v${viewed}; its parameters below are v${wf.version}'s defaults)`}.
      </p>
      <label>Parameters (JSON)
        <textarea rows={Math.min(10, params.split("\n").length + 1)} value={params} onInput={(e) => setParams((e.target as HTMLTextAreaElement).value)} aria-label="Parameters" spellcheck={false} />
      </label>
      <label>Logical date (optional)
        <input type="datetime-local" value={logical} onInput={(e) => setLogical((e.target as HTMLInputElement).value)} />
      </label>
      <p class="muted small" data-testid="trigger-zone">Read in {zone}{wf.schedule ? ", the schedule's time zone" : ""}; empty: now.</p>
      <button type="submit" class="primary">Start the run</button>
      <ErrorBox error={error} />
    </form>
  );
}

function Versions({ name }: { name: string }) {
  const { project } = useSession();
  const [before, setBefore] = useState<number[]>([]);
  const { data, error } = useLoad(() => api.versions(project, name, before[before.length - 1]), [project, name, before]);
  return (
    <div>
      <ErrorBox error={error} />
      <div class="table-wrap">
        <table data-testid="versions">
          <thead><tr><th>Version</th><th>Applied</th><th>Digest</th><th>Description</th><th /></tr></thead>
          <tbody>
            {(data?.versions ?? []).map((v) => (
              <tr key={v.version}>
                <td><a href={href(`workflows/${encodeURIComponent(name)}`, { version: String(v.version), tab: "yaml" })}>v{v.version}</a></td>
                <td>{fmtTime(v.created_at)}</td>
                <td class="mono small">{v.digest.slice(0, 12)}</td>
                <td>{v.description ?? ""}</td>
                <td>{v.version > 1 && <a href={href(`workflows/${encodeURIComponent(name)}`, { tab: "diff", from: String(v.version - 1), to: String(v.version) })}>diff with v{v.version - 1}</a>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="pager">
        {before.length > 0 && <button type="button" onClick={() => setBefore(before.slice(0, -1))}>← Newer</button>}
        {data?.next && <button type="button" onClick={() => setBefore([...before, data.next as number])}>Older →</button>}
      </div>
    </div>
  );
}

/** Any two versions; by default the one before the latest against it, or, on an older
 * version's page, that version against the latest. */
function Diff({ name, latest, viewed }: { name: string; latest: number; viewed: number }) {
  const { project } = useSession();
  const q = new URLSearchParams(window.location.hash.split("?")[1] ?? "");
  const [to, setTo] = useState(Number(q.get("to")) || latest);
  const [from, setFrom] = useState(Number(q.get("from")) || (viewed < latest ? viewed : Math.max(1, latest - 1)));
  const { data, error } = useLoad(() => api.diff(project, name, from, to), [project, name, from, to]);
  const options = Array.from({ length: latest }, (_, i) => latest - i);
  return (
    <div>
      <div class="filters">
        <label>From <select aria-label="From version" value={from} onChange={(e) => setFrom(Number((e.target as HTMLSelectElement).value))}>{options.map((v) => <option key={v} value={v}>v{v}</option>)}</select></label>
        <label>To <select aria-label="To version" value={to} onChange={(e) => setTo(Number((e.target as HTMLSelectElement).value))}>{options.map((v) => <option key={v} value={v}>v{v}</option>)}</select></label>
      </div>
      <ErrorBox error={error} />
      {data && !data.changed && <p class="muted">v{data.from} and v{data.to} are the same.</p>}
      {data && data.changed && (
        <pre class="code diff" data-testid="diff">
          {data.diff.split("\n").map((line, i) => (
            <span key={i} class={line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : ""}>{line + "\n"}</span>
          ))}
        </pre>
      )}
    </div>
  );
}

function WorkflowRuns({ name }: { name: string }) {
  const { project } = useSession();
  const { data, error } = useLoad(() => api.runs({ project, workflow: name, limit: 20 }), [project, name], REFRESH_MS);
  return (
    <div>
      <ErrorBox error={error} />
      {data && data.runs.length === 0 && <p class="muted">No runs of {name} yet.</p>}
      {data && data.runs.length > 0 && <RunTable runs={data.runs} showWorkflow={false} />}
      <a href={href("runs", { project, workflow: name })}>All runs of {name} →</a>
    </div>
  );
}
