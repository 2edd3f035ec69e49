// A project's resource files (the resource centre): every file with its newest version, its
// older versions on demand, download of any version, and (editors) upload and delete. Tasks
// list files in `resources: [path, ...]`; a run uses the versions that were newest when it
// was created.
import { useState } from "preact/hooks";
import { api, fmtTime, type ResourceFile } from "../api";
import { ActionButton, ErrorBox, useCan, useLoad, useSession } from "../common";

// as stratoflow.resources.check_path: relative, parts of A-Z a-z 0-9 . _ - not starting with '.'
const PART = "[A-Za-z0-9_\\-][A-Za-z0-9._\\-]{0,127}";
const PATH = `${PART}(/${PART}){0,7}`;
const MAX_BYTES = 8 * 1024 * 1024;

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function save(project: string, path: string, version: string) {
  const blob = await api.downloadResource(project, path, version);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = path.split("/").pop() ?? "resource";
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function Versions({ project, path }: { project: string; path: string }) {
  const { data, error } = useLoad(() => api.resourceVersions(project, path), [project, path]);
  if (error) return <ErrorBox error={error} />;
  if (!data) return <p class="muted small">Loading versions…</p>;
  return (
    <table data-testid={`versions-${path}`} class="small">
      <thead><tr><th>Version</th><th>Size</th><th>Uploaded</th><th>SHA-256</th><th /></tr></thead>
      <tbody>
        {data.versions.map((v) => (
          <tr key={v.version}>
            <td class="mono">{v.version}</td>
            <td>{size(v.size)}</td>
            <td>{fmtTime(v.created_at)}</td>
            <td class="mono small" title={v.sha256}>{v.sha256 ? v.sha256.slice(0, 12) : "—"}</td>
            <td><ActionButton label="Download" run={() => save(project, path, v.version)} /></td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function ResourcesPage() {
  const { project } = useSession();
  const can = useCan();
  const editor = can("resources.edit");
  const { data, error, reload } = useLoad(() => api.resources(project), [project]);
  const [file, setFile] = useState<File | null>(null);
  const [path, setPath] = useState("");
  const [open, setOpen] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [formError, setFormError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setFormError(null);
    setSaved(null);
    if (!file) return;
    if (file.size > MAX_BYTES) {
      setFormError(new Error(`file: ${file.name} is ${file.size.toLocaleString()} bytes; a resource file is at most ${MAX_BYTES.toLocaleString()} bytes (8 MiB)`));
      return;
    }
    setBusy(true);
    try {
      const up = await api.uploadResource(project, path.trim() || file.name, file);
      setSaved(`Uploaded ${up.path}, version ${up.version}. Runs created from now on use it; list it in a task's resources.`);
      setPath("");
      reload();
    } catch (e) {
      setFormError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  const files: ResourceFile[] = data?.resources ?? [];
  return (
    <section>
      <div class="page-head"><h1>Resources <span class="muted">{project}</span></h1></div>
      <p class="muted">Files a task lists in <code>resources: [path, ...]</code> are in its working directory under that path; a run keeps the versions that were newest when it was created.</p>
      {editor && (
        <form class="card" onSubmit={submit} aria-label="Upload a resource file">
          <label>File
            <input aria-label="File" type="file" required onChange={(e) => {
              const f = (e.target as HTMLInputElement).files?.[0] ?? null;
              setFile(f);
            }} />
          </label>
          <label>Path <span class="muted small">(default: the file's name)</span>
            <input aria-label="Resource path" class="mono" value={path} maxLength={256} pattern={PATH} title="a relative path: up to 8 parts joined by /, each of letters, digits, . _ or -, not starting with ." placeholder={file?.name ?? "sql/load.sql"}
              autocomplete="off" spellcheck={false} onInput={(e) => setPath((e.target as HTMLInputElement).value)} />
          </label>
          <div><button type="submit" class="primary" disabled={busy || !file}>Upload</button></div>
          {saved && <p class="notice" role="status">{saved}</p>}
          <ErrorBox error={formError} />
        </form>
      )}
      <ErrorBox error={error} />
      {data && files.length === 0 && <p class="muted">No resource files in project “{project}” yet.</p>}
      {files.length > 0 && (
        <div class="table-wrap">
          <table data-testid="resources">
            <thead><tr><th>Path</th><th>Version</th><th>Size</th><th>Uploaded</th><th /></tr></thead>
            <tbody>
              {files.map((f) => [
                <tr key={f.path}>
                  <td class="mono">{f.path}</td>
                  <td class="mono">{f.version}</td>
                  <td>{size(f.size)}</td>
                  <td>{fmtTime(f.created_at)}</td>
                  <td class="actions">
                    <button type="button" class="link" aria-expanded={open === f.path} onClick={() => setOpen(open === f.path ? null : f.path)}>Versions</button>{" "}
                    <ActionButton label="Download" run={() => save(project, f.path, f.version)} />{" "}
                    {editor && <ActionButton label="Delete" danger confirm={`Delete ${f.path} and all its versions? Runs that pinned one of them fail the tasks that list it.`}
                      run={() => api.deleteResource(project, f.path)} onDone={() => { setOpen(null); reload(); }} />}
                  </td>
                </tr>,
                open === f.path && (
                  <tr key={`${f.path}-versions`}><td colSpan={5}><Versions key={f.version} project={project} path={f.path} /></td></tr>
                ),
              ])}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
