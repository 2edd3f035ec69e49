// A project's named connections (where sql tasks run): credentials only as
// `{{ secrets.NAME }}` references, a form shaped by the type, and "test connection".
import { useState } from "preact/hooks";
import { api, type Connection, type ConnectionTest } from "../api";
import connectionTypes from "../connectionTypes.json";
import { ActionButton, ErrorBox, useCan, useLoad, useSession } from "../common";
import { SettingsForm, type SettingsType } from "../SettingsForm";

// The types of stratoflow/connections.py (ui_table()), kept equal to it by
// tests/unit/test_ui_connection_types.py. The API validates every setting again and names the
// one it refuses: this table only shapes the form.
const CONNECTION_TYPES: Record<string, SettingsType> = connectionTypes;

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
  return (
    <SettingsForm noun="connection" item={connection} types={CONNECTION_TYPES} defaultType="postgresql" monoAll
      save={(name, type, settings) => api.putConnection(project, name, type, settings)} onDone={onDone} onCancel={onCancel} />
  );
}
