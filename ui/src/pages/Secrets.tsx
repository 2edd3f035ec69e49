// A project's secrets: names only. A value is typed into a password field, sent once, and
// cleared from the form: the API never returns it and this page never shows it.
import { useState } from "preact/hooks";
import { api } from "../api";
import { ActionButton, ErrorBox, useCan, useLoad, useSession } from "../common";

const NAME = "[A-Za-z][A-Za-z0-9_]{0,127}";

export function SecretsPage() {
  const { project, known } = useSession();
  const can = useCan();
  const { data, error, reload } = useLoad(() => api.secrets(project), [project]);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [saved, setSaved] = useState<string | null>(null);
  const [formError, setFormError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);

  if (!known) return <p class="muted">Loading…</p>; // the role here is not known yet
  if (!can("secrets.edit")) return <p class="muted">Your role cannot manage the secrets of project “{project}”.</p>;

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setFormError(null);
    setSaved(null);
    setBusy(true);
    try {
      const set = await api.putSecret(project, name.trim(), value);
      setSaved(`${set.created ? "Created" : "Replaced"} ${set.name}. Its value is not shown again; reference it as {{ secrets.${set.name} }}.`);
      setName("");
      reload();
    } catch (e) {
      setFormError(e as Error);
    } finally {
      setValue(""); // never kept, whatever the outcome
      setBusy(false);
    }
  };
  return (
    <section>
      <div class="page-head"><h1>Secrets <span class="muted">{project}</span></h1></div>
      <p class="muted">Tasks and alert channels use a secret as <code>{"{{ secrets.NAME }}"}</code>; it is resolved only where the task or alert runs.</p>
      <form class="card" onSubmit={submit} aria-label="Set a secret">
        <label>Name
          <input aria-label="Secret name" class="mono" value={name} required maxLength={128} pattern={NAME} title="a letter, then letters, digits or _ (at most 128)" autocomplete="off" spellcheck={false}
            onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>Value <span class="muted small">(sent once, never shown again)</span>
          <input aria-label="Secret value" type="password" autocomplete="new-password" value={value} required
            onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
        </label>
        <div><button type="submit" class="primary" disabled={busy}>Set secret</button></div>
        {saved && <p class="notice" role="status">{saved}</p>}
        <ErrorBox error={formError} />
      </form>
      <ErrorBox error={error} />
      {data && data.secrets.length === 0 && <p class="muted">No secrets in project “{project}” yet.</p>}
      {data && data.secrets.length > 0 && (
        <div class="table-wrap">
          <table data-testid="secrets">
            <thead><tr><th>Name</th><th>Reference</th><th /></tr></thead>
            <tbody>
              {data.secrets.map((s) => (
                <tr key={s.name}>
                  <td class="mono">{s.name}</td>
                  <td><code>{`{{ secrets.${s.name} }}`}</code></td>
                  <td><ActionButton label="Delete" danger confirm={`Delete the secret ${s.name}? Tasks and channels that reference it will fail until it is set again.`}
                    run={() => api.deleteSecret(project, s.name)} onDone={reload} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
