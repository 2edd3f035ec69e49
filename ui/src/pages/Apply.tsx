// Paste a workflow's YAML and apply it. An invalid workflow shows the API's message (the same
// words the CLI prints) and marks each problem's line in the editor.
import { useRef, useState } from "preact/hooks";
import { ApiError, api } from "../api";
import { href, navigate, useCan, useSession } from "../common";

const EXAMPLE = `name: hello
description: A first workflow
tasks:
  greet:
    type: shell
    command: echo "greeting=hello" >> "$STRATOFLOW_OUTPUT"
  shout:
    type: shell
    depends_on: [greet]
    command: echo "{{ tasks.greet.outputs.greeting }}!"
`;

// the text being edited, kept for the tab's life: leaving the page and coming back loses nothing
const DRAFT_KEY = "stratoflow.apply.draft";
const draft = {
  get: (): string | null => { try { return sessionStorage.getItem(DRAFT_KEY); } catch { return null; } },
  set: (text: string) => { try { sessionStorage.setItem(DRAFT_KEY, text); } catch { /* storage full or off */ } },
  clear: () => { try { sessionStorage.removeItem(DRAFT_KEY); } catch { /* storage off */ } },
};

/** Forget the draft: on sign-out, and when a 401 brings the sign-in form, so the tab's next
 * user never sees it. */
export const forgetApplyDraft = draft.clear;

export function ApplyPage() {
  const can = useCan();
  const { project, setProject, known } = useSession();
  const [source, setSourceState] = useState(() => draft.get() ?? EXAMPLE);
  const setSource = (text: string) => { setSourceState(text); draft.set(text); };
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [busy, setBusy] = useState(false);
  const area = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const lines = source.split("\n").length;
  const bad = new Set(error instanceof ApiError ? error.body.problems.map((p) => p.line).filter((l): l is number => l !== null) : []);

  const apply = async () => {
    setBusy(true);
    setError(null);
    try {
      const applied = await api.apply(source);
      draft.clear();
      // the workflow names its project (the API's answer says which): shown there, whatever
      // project was selected
      if (applied.project !== project) setProject(applied.project);
      navigate(`workflows/${encodeURIComponent(applied.name)}`, { applied: applied.created ? `v${applied.version}` : "unchanged" });
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  const goToLine = (line: number) => {
    const el = area.current;
    if (!el) return;
    const starts = [0];
    for (let i = 0; i < source.length; i++) if (source[i] === "\n") starts.push(i + 1);
    const start = starts[line - 1] ?? 0;
    const end = (starts[line] ?? source.length + 1) - 1;
    el.focus();
    el.setSelectionRange(start, end);
    el.scrollTop = (line - 3) * 18;
  };

  // the project a workflow goes to is the one its YAML names, so the role in the selected
  // project does not decide: the server does, and its refusal is shown like any error
  return (
    <section>
      <div class="page-head"><h1>Apply a workflow</h1><a href={href("")}>Back to workflows</a></div>
      <p class="muted">Paste a workflow (format version 1). A changed definition becomes a new version; an unchanged one changes nothing.
        It goes to the project its <code>project:</code> names (else <code>default</code>).</p>
      {known && !can("workflow.apply") && (
        <p class="muted" data-testid="apply-role-note">Your role in project “{project}” cannot apply workflows there; a workflow naming a project where you are an editor can still be applied.</p>
      )}
      <div class="editor">
        <div class="gutter" ref={gutter} aria-hidden="true">
          {Array.from({ length: lines }, (_, i) => (
            <div key={i} class={bad.has(i + 1) ? "bad-line" : ""}>{i + 1}</div>
          ))}
        </div>
        <textarea
          ref={area} spellcheck={false} aria-label="Workflow YAML" value={source}
          onInput={(e) => setSource((e.target as HTMLTextAreaElement).value)}
          onScroll={(e) => { if (gutter.current) gutter.current.scrollTop = (e.target as HTMLTextAreaElement).scrollTop; }}
        />
      </div>
      <div class="row">
        <button type="button" class="primary" disabled={busy} onClick={apply}>Apply</button>
      </div>
      {error && (
        <div class="error" role="alert" data-testid="apply-error">
          <pre>{error.message}</pre>
          {error instanceof ApiError && error.body.problems.some((p) => p.line) && (
            <ul>
              {error.body.problems.filter((p) => p.line).map((p) => (
                <li key={`${p.path}${p.line}`}>
                  <button type="button" class="link" onClick={() => goToLine(p.line as number)}>line {p.line}</button>{" "}
                  {p.path}: {p.message}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
