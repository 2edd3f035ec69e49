// Paste a workflow's YAML and apply it. An invalid workflow shows the API's message (the same
// words the CLI prints) and marks each problem's line in the editor.
import { useRef, useState } from "preact/hooks";
import { ApiError, api } from "../api";
import { href, navigate, useCan } from "../common";

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

export function ApplyPage() {
  const can = useCan();
  const [source, setSource] = useState(EXAMPLE);
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

  if (!can("workflow.apply")) return <p class="muted">Your role cannot apply workflows.</p>;
  return (
    <section>
      <div class="page-head"><h1>Apply a workflow</h1><a href={href("")}>Back to workflows</a></div>
      <p class="muted">Paste a workflow (format version 1). A changed definition becomes a new version; an unchanged one changes nothing.</p>
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
