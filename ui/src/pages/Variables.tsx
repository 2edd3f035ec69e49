// A project's variables: named text values templates read as {{ var.value.NAME }} (or parsed,
// {{ var.json.NAME }}) when a task is rendered. Not secrets: every role of the project sees
// them; editors set and delete them.
import { useState } from "preact/hooks";
import { api } from "../api";
import { ActionButton, ErrorBox, useCan, useLoad, useSession } from "../common";

const NAME = "[A-Za-z][A-Za-z0-9_]{0,127}";
const NAME_HINT = "a letter, then letters, digits or _ (at most 128)";
const MAX_BYTES = 64 * 1024;

export function VariablesPage() {
  const { project } = useSession();
  const can = useCan();
  const { data, error, reload } = useLoad(() => api.variables(project), [project]);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [saved, setSaved] = useState<string | null>(null);
  const [formError, setFormError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const editor = can("variables.edit");

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setFormError(null);
    setSaved(null);
    // the limit is in UTF-8 bytes, as the API counts it: said here, and nothing typed is cut
    const bytes = new TextEncoder().encode(value).length;
    if (bytes > MAX_BYTES) {
      setFormError(new Error(`The value is ${bytes.toLocaleString("en")} bytes (UTF-8); a variable's value is at most ${MAX_BYTES.toLocaleString("en")} bytes (64 KiB). Nothing was saved.`));
      return;
    }
    setBusy(true);
    try {
      const set = await api.putVariable(project, name.trim(), value);
      setSaved(`Set ${set.name}: tasks rendered from now on read {{ var.value.${set.name} }} as this value.`);
      setName("");
      setValue("");
      reload();
    } catch (e) {
      setFormError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section>
      <div class="page-head"><h1>Variables <span class="muted">{project}</span></h1></div>
      <p class="muted">Templates read a variable when a task is rendered: <code>{"{{ var.value.NAME }}"}</code> (the text)
        or <code>{"{{ var.json.NAME }}"}</code> (parsed as JSON). Not for credentials: use secrets.</p>
      {editor && (
        <form class="card" onSubmit={submit} aria-label="Set a variable">
          <label>Name
            <input aria-label="Variable name" class="mono" value={name} required maxLength={128} pattern={NAME} title={NAME_HINT} autocomplete="off" spellcheck={false}
              onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </label>
          <label>Value <span class="muted small">(text, at most 64 KiB: {MAX_BYTES.toLocaleString("en")} bytes in UTF-8)</span>
            <textarea aria-label="Variable value" class="mono" rows={3} value={value}
              onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)} />
          </label>
          <div><button type="submit" class="primary" disabled={busy}>Set variable</button></div>
          {saved && <p class="notice" role="status">{saved}</p>}
          <ErrorBox error={formError} />
        </form>
      )}
      <ErrorBox error={error} />
      {data && data.variables.length === 0 && <p class="muted">No variables in project “{project}” yet.</p>}
      {data && data.variables.length > 0 && (
        <div class="table-wrap">
          <table data-testid="variables">
            <thead><tr><th>Name</th><th>Value</th><th>Set by</th><th>When</th>{editor && <th />}</tr></thead>
            <tbody>
              {data.variables.map((v) => (
                <tr key={v.name}>
                  <td class="mono">{v.name}</td>
                  <td class="mono"><span title={v.truncated ? `${v.value}… (${v.size} bytes in all)` : v.value}>{v.value.length > 120 || v.truncated ? `${v.value.slice(0, 117)}...` : v.value}</span></td>
                  <td>{v.updated_by}</td>
                  <td class="small">{new Date(v.updated_at).toLocaleString()}</td>
                  {editor && (
                    <td><ActionButton label="Delete" danger confirm={`Delete the variable ${v.name}? Tasks that read it will fail until it is set again.`}
                      run={() => api.deleteVariable(project, v.name)} onDone={reload} /></td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
