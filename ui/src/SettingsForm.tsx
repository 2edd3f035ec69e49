// The add/edit form of a project's named settings (an alert channel, a connection): a name, a
// type, and the type's settings, credentials only as `{{ secrets.NAME }}` references. The type
// table only shapes the form: the API validates every setting again and names the one it
// refuses, shown under its field.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError } from "./api";
import { ErrorBox } from "./common";

export interface SettingsType {
  summary: string;
  required: string[];
  optional: string[];
  credentials: string[];
  defaults?: Record<string, string>;
  choices?: Record<string, string[]>;
}

export interface Named { name: string; type: string; settings: Record<string, string> }

const SECRET_HINT = "{{ secrets.NAME }}";

/** What a kind's own field needs: ``null`` from ``field`` leaves the key to the plain input. */
export interface Field { key: string; kind: SettingsType; value: string; set: (v: string) => void }

export function SettingsForm({ noun, item, types, defaultType, monoAll, save, field, extraSettings, extra, onDone, onCancel }: {
  noun: string; // "connection": the form's labels and title
  item: Named | null; // null: add one
  types: Record<string, SettingsType>;
  defaultType: string;
  monoAll: boolean; // every value in monospace (else credentials only)
  save: (name: string, type: string, settings: Record<string, string>) => Promise<unknown>;
  field?: (f: Field) => ComponentChildren | null;
  extraSettings?: (type: string) => Record<string, string>; // throws an Error naming what is wrong
  extra?: (type: string) => ComponentChildren;
  onDone: () => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState(item?.name ?? "");
  const [type, setType] = useState(item?.type ?? defaultType);
  const [values, setValues] = useState<Record<string, string>>(item ? { ...item.settings } : {});
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const kind = types[type];
  const problems = error instanceof ApiError ? error.body.problems : [];
  const problemOf = (key: string) => problems.find((p) => p.path === `settings.${key}`);
  const Noun = noun.charAt(0).toUpperCase() + noun.slice(1);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(null);
    const settings: Record<string, string> = {};
    for (const key of [...kind.required, ...kind.optional]) if (values[key]?.trim()) settings[key] = values[key].trim();
    if (extraSettings) {
      try {
        Object.assign(settings, extraSettings(type));
      } catch (e) {
        setError(e as Error);
        return;
      }
    }
    setBusy(true);
    try {
      await save(name.trim(), type, settings);
      onDone();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-label={item ? `Edit ${noun} ${item.name}` : `Add a ${noun}`}>
      <h2>{item ? `Edit ${item.name}` : `Add a ${noun}`}</h2>
      <label>Name
        <input aria-label={`${Noun} name`} value={name} disabled={item !== null} required maxLength={128} pattern="[a-z0-9_\-]+" title="lower-case letters, digits, _ or -"
          onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <label>Type
        <select aria-label={`${Noun} type`} value={type} onChange={(e) => setType((e.target as HTMLSelectElement).value)}>
          {Object.keys(types).map((t) => <option key={t} value={t}>{t}</option>)}
        </select>
        <span class="muted small">{kind.summary}</span>
      </label>
      {[...kind.required, ...kind.optional].map((key) => {
        const credential = kind.credentials.includes(key);
        const problem = problemOf(key);
        const value = values[key] ?? "";
        const set = (v: string) => setValues({ ...values, [key]: v });
        const own = field?.({ key, kind, value, set }) ?? null;
        return (
          <label key={`${type}.${key}`}>
            <span>{key}{kind.required.includes(key) ? " *" : ""}{credential && <span class="muted small"> — credential: a secret reference</span>}</span>
            {own ?? (
              <input aria-label={key} class={monoAll || credential ? "mono" : ""} aria-invalid={problem ? true : undefined}
                placeholder={credential ? SECRET_HINT : kind.defaults?.[key] ?? ""} autocomplete="off" spellcheck={false}
                value={value} onInput={(e) => set((e.target as HTMLInputElement).value)} />
            )}
            {problem && <span class="error-inline" role="alert" data-testid={`problem-${key}`}>settings.{key}: {problem.message}</span>}
          </label>
        );
      })}
      {extra?.(type)}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>{`Save ${noun}`}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}
