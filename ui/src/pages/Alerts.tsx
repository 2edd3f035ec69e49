// A project's alerts: its channels (credentials only as `{{ secrets.NAME }}` references), its
// groups (with "send a test alert"), and the delivery log with each channel's status.
import { useEffect, useState } from "preact/hooks";
import { DELIVERY_STATUSES, api, fmtTime, type AlertChannel, type AlertGroup, type Delivery } from "../api";
import channelTypes from "../channelTypes.json";
import { ActionButton, ErrorBox, StateBadge, href, navigate, useCan, useLoad, useProjectParams, useSession } from "../common";
import { SettingsForm, type Field, type SettingsType } from "../SettingsForm";

// The channel types of stratoflow/alerts/_channels.py (CHANNEL_TYPES), kept equal to it by
// tests/unit/test_ui_channel_types.py. The API validates every setting again and names the one
// it refuses: this table only shapes the form.
const CHANNEL_TYPES: Record<string, SettingsType> = channelTypes;
const HEADER = "header.";

const TABS = ["channels", "groups", "deliveries"] as const;

export function AlertsPage({ query }: { query: URLSearchParams }) {
  const { project } = useSession();
  // a tab the page does not have (a mistyped or old link) opens the first: no pane was shown
  const asked = query.get("tab");
  const tab = (TABS as readonly string[]).includes(asked ?? "") ? (asked as (typeof TABS)[number]) : "channels";
  const channels = useLoad(() => api.channels(project), [project]);
  return (
    <section>
      <div class="page-head"><h1>Alerts <span class="muted">{project}</span></h1></div>
      <nav class="tabs" role="tablist">
        {TABS.map((t) => (
          <button type="button" role="tab" aria-selected={tab === t} class={tab === t ? "active" : ""} key={t} onClick={() => navigate("alerts", { tab: t })}>{t}</button>
        ))}
      </nav>
      <ErrorBox error={channels.error} />
      {tab === "channels" && channels.data && <Channels channels={channels.data.channels} reload={channels.reload} />}
      {tab === "groups" && channels.data && <Groups channels={channels.data.channels} />}
      {tab === "deliveries" && <Deliveries query={query} />}
    </section>
  );
}

function Channels({ channels, reload }: { channels: AlertChannel[]; reload: () => void }) {
  const { project } = useSession();
  const can = useCan();
  const [editing, setEditing] = useState<AlertChannel | "new" | null>(null);
  return (
    <div>
      {can("alerts.edit") && editing === null && (
        <div class="row"><button type="button" class="primary" onClick={() => setEditing("new")}>Add a channel</button></div>
      )}
      {editing !== null && (
        <ChannelForm key={editing === "new" ? "" : editing.name} channel={editing === "new" ? null : editing}
          onDone={() => { setEditing(null); reload(); }} onCancel={() => setEditing(null)} />
      )}
      {channels.length === 0 && <p class="muted">No alert channels in project “{project}” yet.</p>}
      {channels.length > 0 && (
        <div class="table-wrap">
          <table data-testid="channels">
            <thead><tr><th>Name</th><th>Type</th><th>Settings set</th><th /></tr></thead>
            <tbody>
              {channels.map((c) => (
                <tr key={c.name}>
                  <td class="mono">{c.name}</td>
                  <td>{c.type}</td>
                  {/* names only: a setting's value (even a reference) is for the edit form */}
                  <td>{Object.keys(c.settings).sort().map((k) => <code class="chip" key={k}>{k}</code>)}</td>
                  <td>
                    <span class="actions">
                      <EditDelete what={`the channel ${c.name}`} edit={() => setEditing(c)} remove={() => api.deleteChannel(project, c.name)} onDone={reload} />
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/** Edit and Delete (asking first), offered only to a role that may change alerts. */
function EditDelete({ what, edit, remove, onDone }: { what: string; edit: () => void; remove: () => Promise<unknown>; onDone: () => void }) {
  const can = useCan();
  if (!can("alerts.edit")) return null;
  return (
    <>
      <button type="button" onClick={edit}>Edit</button>
      <ActionButton label="Delete" danger confirm={`Delete ${what}?`} run={remove} onDone={onDone} />
    </>
  );
}

function ChannelForm({ channel, onDone, onCancel }: { channel: AlertChannel | null; onDone: () => void; onCancel: () => void }) {
  const { project } = useSession();
  const [headers, setHeaders] = useState(
    Object.entries(channel?.settings ?? {}).filter(([k]) => k.startsWith(HEADER)).map(([k, v]) => `${k.slice(HEADER.length)}: ${v}`).join("\n"),
  );
  const headerSettings = (type: string) => {
    const settings: Record<string, string> = {};
    if (type === "webhook") {
      for (const line of headers.split("\n").map((l) => l.trim()).filter(Boolean)) {
        const at = line.indexOf(":");
        if (at < 1) throw new Error(`headers: “${line}” is not “Name: value”`);
        settings[HEADER + line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
    }
    return settings;
  };
  const field = ({ key, kind, value, set }: Field) => {
    const choices = kind.choices?.[key];
    if (choices) {
      return (
        <select aria-label={key} value={value} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
          <option value="">(default)</option>
          {choices.map((c) => <option key={c} value={c}>{c}</option>)}
        </select>
      );
    }
    if (key === "body") {
      return <textarea aria-label={key} rows={4} spellcheck={false} value={value} onInput={(e) => set((e.target as HTMLTextAreaElement).value)} />;
    }
    return null;
  };
  return (
    <SettingsForm noun="channel" item={channel} types={CHANNEL_TYPES} defaultType="webhook" monoAll={false}
      save={(name, type, settings) => api.putChannel(project, name, type, settings)} field={field} extraSettings={headerSettings}
      extra={(type) => type === "webhook" && (
        <label>Headers (one “Name: value” a line; an Authorization, token or key header is a credential)
          <textarea aria-label="Headers" rows={3} spellcheck={false} value={headers} onInput={(e) => setHeaders((e.target as HTMLTextAreaElement).value)} />
        </label>
      )}
      onDone={onDone} onCancel={onCancel} />
  );
}

function Groups({ channels }: { channels: AlertChannel[] }) {
  const { project } = useSession();
  const can = useCan();
  const { data, error, reload } = useLoad(() => api.groups(project), [project]);
  const [editing, setEditing] = useState<AlertGroup | "new" | null>(null);
  const [tested, setTested] = useState<{ group: string; deliveries: Delivery[] } | null>(null);
  return (
    <div>
      <ErrorBox error={error} />
      {can("alerts.edit") && editing === null && (
        <div class="row"><button type="button" class="primary" onClick={() => setEditing("new")} disabled={channels.length === 0}>Add a group</button>
          {channels.length === 0 && <span class="muted small"> add a channel first</span>}</div>
      )}
      {editing !== null && (
        <GroupForm key={editing === "new" ? "" : editing.name} group={editing === "new" ? null : editing} channels={channels}
          onDone={() => { setEditing(null); reload(); }} onCancel={() => setEditing(null)} />
      )}
      {data && data.groups.length === 0 && <p class="muted">No alert groups in project “{project}” yet.</p>}
      {data && data.groups.length > 0 && (
        <div class="table-wrap">
          <table data-testid="groups">
            <thead><tr><th>Group</th><th>Channels</th><th /></tr></thead>
            <tbody>
              {data.groups.map((g) => (
                <tr key={g.name}>
                  <td class="mono">{g.name}</td>
                  <td>{g.channels.map((c) => <code class="chip" key={c}>{c}</code>)}</td>
                  <td>
                    <span class="actions">
                      {can("alerts.test") && (
                        <ActionButton label="Send a test alert" run={async () => setTested({ group: g.name, deliveries: (await api.testGroup(project, g.name)).deliveries })} />
                      )}
                      <EditDelete what={`the group ${g.name}`} edit={() => setEditing(g)} remove={() => api.deleteGroup(project, g.name)} onDone={reload} />
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {tested && (
        <div class="card wide" data-testid="test-result" aria-label={`Test alert to ${tested.group}`}>
          <h2>Test alert to {tested.group}</h2>
          <table>
            <thead><tr><th>Channel</th><th>Status</th><th>Attempts</th><th>Error</th></tr></thead>
            <tbody>
              {tested.deliveries.map((d) => (
                <tr key={d.channel} data-channel={d.channel}>
                  <td class="mono">{d.channel}</td><td><StateBadge state={d.status} /></td><td>{d.attempts}</td>
                  <td class="wrap">{d.last_error ?? ""}{d.status === "retrying" && d.next_at && <span class="muted small"> next try {fmtTime(d.next_at)}</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function GroupForm({ group, channels, onDone, onCancel }: { group: AlertGroup | null; channels: AlertChannel[]; onDone: () => void; onCancel: () => void }) {
  const { project } = useSession();
  const [name, setName] = useState(group?.name ?? "");
  const [picked, setPicked] = useState<string[]>(group?.channels ?? []);
  const [error, setError] = useState<Error | null>(null);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(null);
    try {
      await api.putGroup(project, name.trim(), picked);
      onDone();
    } catch (e) {
      setError(e as Error);
    }
  };
  const toggle = (c: string) => setPicked(picked.includes(c) ? picked.filter((x) => x !== c) : [...picked, c]);
  return (
    <form class="card" onSubmit={submit} aria-label={group ? `Edit group ${group.name}` : "Add a group"}>
      <h2>{group ? `Edit ${group.name}` : "Add a group"}</h2>
      <label>Name
        <input aria-label="Group name" value={name} disabled={group !== null} required maxLength={128} pattern="[a-z0-9_\-]+" title="lower-case letters, digits, _ or -"
          onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <fieldset class="checks">
        <legend>Channels</legend>
        {channels.map((c) => (
          <label key={c.name} class="check">
            <input type="checkbox" checked={picked.includes(c.name)} onChange={() => toggle(c.name)} />
            <span class="mono">{c.name}</span> <span class="muted small">{c.type}</span>
          </label>
        ))}
      </fieldset>
      <div class="actions">
        <button type="submit" class="primary" disabled={picked.length === 0}>Save group</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

/** The delivery log: one row an alert, each of its channels with its status. */
function Deliveries({ query }: { query: URLSearchParams }) {
  const { project } = useSession();
  const status = query.get("status") ?? "";
  // the run filter and the page (`cursor`) are a project's: another starts on its newest
  // alerts, of every run (the status filter is kept)
  const mine = useProjectParams(query, (p) => navigate("alerts", { tab: "deliveries", project: p, status: status || undefined }, true));
  const runId = mine ? query.get("run_id") ?? "" : "";
  const cursor = (mine && Number(query.get("cursor"))) || undefined;
  const [runInput, setRunInput] = useState(runId);
  useEffect(() => setRunInput(runId), [runId]); // the URL's filter, when it changes
  const { data, error, reload } = useLoad(() => api.deliveries({ project, run_id: runId, status, cursor, limit: 100 }), [project, runId, status, cursor]);
  const go = (q: Record<string, string | undefined>) => navigate("alerts", { tab: "deliveries", project, run_id: runId || undefined, status: status || undefined, ...q });
  const alerts: Delivery[][] = [];
  for (const d of data?.deliveries ?? []) {
    const last = alerts[alerts.length - 1];
    if (last && last[0].key === d.key) last.push(d);
    else alerts.push([d]);
  }
  return (
    <div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); go({ run_id: runInput.trim() || undefined, cursor: undefined }); }}>
        <label>Run <input aria-label="Run filter" class="mono" value={runInput} size={28} onInput={(e) => setRunInput((e.target as HTMLInputElement).value)} /></label>
        <label>Status{" "}
          <select aria-label="Status filter" value={status} onChange={(e) => go({ status: (e.target as HTMLSelectElement).value || undefined, cursor: undefined })}>
            <option value="">all</option>
            {DELIVERY_STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <button type="submit">Filter</button>
        <button type="button" class="link" onClick={reload}>refresh</button>
      </form>
      <ErrorBox error={error} />
      {data && alerts.length === 0 && <p class="muted">No alerts match.</p>}
      {alerts.length > 0 && (
        <div class="table-wrap">
          <table data-testid="deliveries">
            <thead><tr><th>When</th><th>Alert</th><th>Workflow</th><th>Run</th><th>Group</th><th>Channels</th></tr></thead>
            <tbody>
              {alerts.map((rows) => {
                const a = rows[0];
                return (
                  <tr key={a.key} data-key={a.key}>
                    <td>{fmtTime(a.created_at)}</td>
                    <td class="wrap"><span class="badge">{a.event}</span> {a.subject}{a.task_id && <div class="muted small mono">task {a.task_id}</div>}</td>
                    <td>{a.workflow ? <a href={href(`workflows/${encodeURIComponent(a.workflow)}`)}>{a.workflow}</a> : "—"}</td>
                    <td>{a.run_id ? <a class="mono" href={href(`runs/${encodeURIComponent(a.run_id)}`)}>{a.run_id}</a> : <span class="muted">—</span>}</td>
                    <td class="mono">{a.group}</td>
                    <td class="wrap">
                      {rows.map((d) => (
                        <div key={d.channel} class="delivery" data-channel={d.channel}
                          title={[`${d.attempts} attempt(s)`, d.sent_at && `sent ${fmtTime(d.sent_at)}`, d.next_at && `next try ${fmtTime(d.next_at)}`, d.last_error].filter(Boolean).join(" · ")}>
                          <span class="mono">{d.channel}</span> <StateBadge state={d.status} />
                          {d.last_error && <span class="error-inline">{d.last_error}</span>}
                        </div>
                      ))}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <div class="pager">
        {cursor && <button type="button" onClick={() => go({ cursor: undefined })}>← Newest</button>}
        {data?.next && <button type="button" onClick={() => go({ cursor: String(data.next) })}>Older →</button>}
      </div>
    </div>
  );
}
