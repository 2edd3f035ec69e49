// A project's named connections (where sql tasks run): credentials only as
// `{{ secrets.NAME }}` references, a form shaped by the type, and "test connection".
import { useState } from "preact/hooks";
import { ApiError, api, type Connection, type ConnectionTest } from "../api";
import connectionTypes from "../connectionTypes.json";
import { ActionButton, ErrorBox, useCan, useLoad, useSession } from "../common";

interface ConnectionType { summary: string; required: string[]; optional: string[]; credentials: string[]; defaults: Record<string, string> }

// The types of stratoflow/connections.py (ui_table()), kept equal to it by
// tests/unit/test_ui_connection_types.py. The API validates every setting again and names the
// one it refuses: this table only shapes the form.
const CONNECTION_TYPES: Record<string, ConnectionType> = connectionTypes;
const SECRET_HINT = "{{ secrets.NAME }}";

export function ConnectionsPage() {
  const { project } = useSession();
  const can = useCan();
  const { data, error, reload } = useLoad(() => api.connections(project), [project]);
  const [editing, setEditing] = useState<Connection | "new" | null>(null);
  const [tested, setTested] = useState<ConnectionTest | null>(null);
  return (
    <section>
      <div class="page-head"><h1>Connections <span class="muted">{project}</span></h1></div>
      <p class="muted">A <code>type: sql</code> task names one as <code>connection:</code>. A password is a secret reference, resolved only where the query runs.</p>
      {can("connections.edit") && editing === null && (
        <div class="row"><button type="button" class="primary" onClick={() => setEditing("new")}>Add a connection</button></div>
      )}
      {editing !== null && (
        <ConnectionForm key={editing === "new" ? "" : editing.name} connection={editing === "new" ? null : editing}
          onDone={() => { setEditing(null); reload(); }} onCancel={() => setEditing(null)} />
      )}
      <ErrorBox error={error} />
      {tested && (
        <p class={tested.ok ? "notice" : "error"} role="status" data-testid="connection-test">
          {tested.name}: {tested.ok ? "ok" : "failed"} — {tested.message}
        </p>
      )}
      {data && data.connections.length === 0 && <p class="muted">No connections in project “{project}” yet.</p>}
      {data && data.connections.length > 0 && (
        <div class="table-wrap">
          <table data-testid="connections">
            <thead><tr><th>Name</th><th>Type</th><th>Settings</th><th /></tr></thead>
            <tbody>
              {data.connections.map((c) => (
                <tr key={c.name}>
                  <td class="mono">{c.name}</td>
                  <td>{c.type}</td>
                  {/* values are safe to show: credentials are references */}
                  <td>{Object.entries(c.settings).sort().map(([k, v]) => <code class="chip" key={k}>{k}={v}</code>)}</td>
                  <td>
                    <span class="actions">
                      {can("connections.test") && (
                        <ActionButton label="Test" run={async () => setTested(await api.testConnection(project, c.name))} />
                      )}
                      {can("connections.edit") && (
                        <>
                          <button type="button" onClick={() => setEditing(c)}>Edit</button>
                          <ActionButton label="Delete" danger confirm={`Delete the connection ${c.name}? Tasks that name it will fail until it is added again.`}
                            run={() => api.deleteConnection(project, c.name)} onDone={reload} />
                        </>
                      )}
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function ConnectionForm({ connection, onDone, onCancel }: { connection: Connection | null; onDone: () => void; onCancel: () => void }) {
  const { project } = useSession();
  const [name, setName] = useState(connection?.name ?? "");
  const [type, setType] = useState(connection?.type ?? "postgresql");
  const [values, setValues] = useState<Record<string, string>>(connection ? { ...connection.settings } : {});
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const kind = CONNECTION_TYPES[type];
  const problems = error instanceof ApiError ? error.body.problems : [];
  const problemOf = (key: string) => problems.find((p) => p.path === `settings.${key}`);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(null);
    const settings: Record<string, string> = {};
    for (const key of [...kind.required, ...kind.optional]) if (values[key]?.trim()) settings[key] = values[key].trim();
    setBusy(true);
    try {
      await api.putConnection(project, name.trim(), type, settings);
      onDone();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-label={connection ? `Edit connection ${connection.name}` : "Add a connection"}>
      <h2>{connection ? `Edit ${connection.name}` : "Add a connection"}</h2>
      <label>Name
        <input aria-label="Connection name" value={name} disabled={connection !== null} required maxLength={128} pattern="[a-z0-9_\-]+"
          onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <label>Type
        <select aria-label="Connection type" value={type} onChange={(e) => setType((e.target as HTMLSelectElement).value)}>
          {Object.keys(CONNECTION_TYPES).map((t) => <option key={t} value={t}>{t}</option>)}
        </select>
        <span class="muted small">{kind.summary}</span>
      </label>
      {[...kind.required, ...kind.optional].map((key) => {
        const credential = kind.credentials.includes(key);
        const problem = problemOf(key);
        const set = (v: string) => setValues({ ...values, [key]: v });
        return (
          <label key={`${type}.${key}`}>
            <span>{key}{kind.required.includes(key) ? " *" : ""}{credential && <span class="muted small"> — credential: a secret reference</span>}</span>
            <input aria-label={key} class="mono" aria-invalid={problem ? true : undefined}
              placeholder={credential ? SECRET_HINT : kind.defaults[key] ?? ""} autocomplete="off" spellcheck={false}
              value={values[key] ?? ""} onInput={(e) => set((e.target as HTMLInputElement).value)} />
            {problem && <span class="error-inline" role="alert" data-testid={`problem-${key}`}>settings.{key}: {problem.message}</span>}
          </label>
        );
      })}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>Save connection</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}
