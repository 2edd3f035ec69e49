import { withBounds, type GNode, type Layout, type ServedLayout } from "./graph/layout";

// The Stratoflow REST API as the UI uses it. Every URL is relative to the page, so the UI
// works at the root of the local server and under an API Gateway stage prefix alike.

export type RunState = "queued" | "running" | "paused" | "succeeded" | "failed" | "stopped";
export const RUN_STATES: RunState[] = ["queued", "running", "paused", "succeeded", "failed", "stopped"];
export const TASK_STATES = [
  "waiting", "queued", "running", "up_for_retry", "succeeded", "failed", "skipped",
  "upstream_failed", "stopped",
] as const;
export type TaskState = (typeof TASK_STATES)[number];

export interface Problem { path: string; message: string; line: number | null }
export interface ErrorBody { error: string; message: string; problems: Problem[] }

export class ApiError extends Error {
  constructor(public status: number, public body: ErrorBody) {
    super(body.message);
  }
}

export interface LastRun { id: string; state: RunState; created_at: string | null; ended_at: string | null }
export interface VersionSummary {
  project: string; name: string; version: number; digest: string; created_at: string | null;
  paused: boolean; description: string | null; schedule: { cron: string; timezone?: string } | null;
  tasks: number;
  schedule_error?: string | null; // why the schedule cannot fire; it is skipped until it can
}
export interface WorkflowSummary extends VersionSummary { last_run: LastRun | null; next_run_at: string | null }
export interface TaskDoc { type: string; depends_on?: string[]; [key: string]: unknown }
export interface VersionDetail extends VersionSummary {
  document: { params?: Record<string, unknown>; tasks: Record<string, TaskDoc>; [key: string]: unknown };
  source: string;
  /** where ELK's layout of this version is kept (null: this server keeps none) */
  layout?: string | null;
}
export interface RunView {
  id: string; workflow: string; project: string; version: number; state: RunState; trigger: string;
  params: Record<string, unknown>; logical_date: string | null; created_at: string | null;
  started_at: string | null; ended_at: string | null; duration_seconds: number | null;
  tasks_total: number; tasks_done: number; tasks_failed: number; tasks_running: number; error: string | null;
  // a sub-workflow's run: the run (and its task) that started it
  parent_run?: string | null; parent_task?: string | null;
}
export interface AttemptView {
  attempt: number; state: string; started_at: string | null; ended_at: string | null;
  duration_seconds: number | null; exit_code: number | null; error: string | null;
  outputs: Record<string, unknown>;
}
export interface TaskView {
  state: TaskState; attempts: number; outputs: Record<string, unknown>; error: string | null;
  started_at: string | null; ended_at: string | null; duration_seconds: number | null;
  next_try_at: string | null; history: AttemptView[];
  child_run?: string | null; // a sub-workflow task (type: workflow): the run it started
}
// `revision` names what the view includes; `full: false` means `tasks` holds only the tasks
// changed since the `since` asked for (each entry whole): put them over the view you have.
export interface RunDetail { run: RunView; tasks: Record<string, TaskView>; revision?: number | null; full?: boolean }
/** A run and each task's state, nothing more (GET /runs/{id}/states): a run page draws its
 * graph from this and the layout before the whole view arrives. */
export interface RunStates {
  run: RunView; revision?: number | null; states: Record<string, TaskState>;
  /** where ELK's layout of the run's version is kept (null: this server keeps none) */
  layout?: string | null;
}
export interface Timeline {
  run: RunView; start: string | null; end: string | null;
  tasks: { task_id: string; state: TaskState; attempts: { attempt: number; state: string; started_at: string | null; ended_at: string | null; duration_seconds: number | null }[] }[];
}
export type BackfillState =
  | "running"
  | "paused"
  | "cancelling"
  | "succeeded"
  | "failed"
  | "cancelled";
export type BackfillDateState = "pending" | "running" | "succeeded" | "failed" | "stopped" | "skipped" | "not_run";
export interface BackfillDate {
  logical_date: string; run_id: string; state: BackfillDateState; lane: number | null;
  action: string | null; run_state: RunState | null; error: string | null;
  /** the workflow version its run uses, once a lane took it (a rerun: its run's own) */
  version?: number | null;
}
export interface BackfillView {
  id: string; project: string; workflow: string; version: number; state: BackfillState;
  parallel: number; order: "asc" | "desc"; rerun: "none" | "failed" | "all";
  params: Record<string, unknown>; counts: Record<BackfillDateState, number>;
  created_at: string; updated_at: string | null; ended_at: string | null; created_by: string | null;
  dates?: BackfillDate[] | null;
  /** dependent mode: the backfill that included this one */
  parent?: string | null;
  /** dependent mode: ids in a list; on one backfill, the included backfills with their dates */
  dependents?: (string | BackfillView)[] | null;
}
export interface BackfillRequest {
  start?: string; end?: string; dates?: string[]; parallel: number; order: "asc" | "desc";
  rerun: "none" | "failed" | "all"; params: Record<string, unknown>; dependents?: boolean;
}
export const TERMINAL_BACKFILL: BackfillState[] = ["succeeded", "failed", "cancelled"];
export interface Me { user: string; project: string; role: string | null; actions: string[] }
export interface LogPage { text: string; next: number; size: number }
// Alert channels hold credentials only as `{{ secrets.NAME }}` references, so `settings` never
// carries a credential's value.
export interface AlertChannel { project: string; name: string; type: string; settings: Record<string, string> }
// A project's variable: text that templates read as {{ var.value.NAME }} (not a secret).
export interface Variable {
  project: string;
  name: string;
  value: string;
  updated_at: string;
  updated_by: string;
  /** in a list: the whole value's size in bytes, and whether ``value`` is its beginning only */
  size?: number;
  truncated?: boolean;
}

// Connections hold credentials only as `{{ secrets.NAME }}` references, like alert channels.
export interface Connection { project: string; name: string; type: string; settings: Record<string, string> }
export interface ConnectionTest { project: string; name: string; ok: boolean; message: string }
export interface AlertGroup { project: string; name: string; channels: string[] }
export type DeliveryStatus = "pending" | "retrying" | "sent" | "failed" | "skipped";
export const DELIVERY_STATUSES: DeliveryStatus[] = ["pending", "retrying", "sent", "failed", "skipped"];
export interface Delivery {
  key: string; project: string; channel: string; group: string; event: string; workflow: string;
  run_id: string | null; task_id: string | null; action: string; subject: string; status: DeliveryStatus;
  attempts: number; next_at: string | null; last_error: string | null; created_at: string; sent_at: string | null;
}

function base(): string {
  const path = window.location.pathname;
  return path.endsWith("/") ? path : path.slice(0, path.lastIndexOf("/") + 1);
}

export function url(path: string, query: Record<string, string | number | undefined | null> = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  const qs = params.toString();
  return base() + path.replace(/^\//, "") + (qs ? `?${qs}` : "");
}

// An API token (`stratoflow tokens create`), sent when the API asks for one (401).
const TOKEN_KEY = "stratoflow.token";
export const apiToken = {
  get: (): string | null => localStorage.getItem(TOKEN_KEY),
  set: (value: string) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
  /** Calls ``listener`` when another tab of the browser signs in or out: the token is every
   * tab's, so this tab's user has changed too. Returns the unsubscribe. */
  onChangeElsewhere: (listener: () => void): (() => void) => {
    const onStorage = (e: StorageEvent) => {
      if (e.storageArea === localStorage && (e.key === TOKEN_KEY || e.key === null)) listener();
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  },
};

function authHeaders(): Record<string, string> {
  const t = apiToken.get();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** ``fetch``, its network failure (no answer: the server stopped or restarting, the network
 * down) told as such: the browser's own words ("Failed to fetch", "NetworkError when
 * attempting to fetch resource") did not say what had failed. */
async function send(input: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(input, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new Error(`cannot reach the Stratoflow API at ${new URL(input, location.href).origin} (${err instanceof Error ? err.message : String(err)}); is the server running?`);
  }
}

async function request<T>(method: string, path: string, query: Record<string, string | number | undefined | null> = {}, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { Accept: "application/json", ...authHeaders() } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { ...init.headers, "Content-Type": "application/json" };
  }
  return reply<T>(await send(url(path, query), init));
}

/** Told of every 401 the API answers (a token missing, revoked or expired): the app then asks
 * for a token, whatever page made the request. */
let unauthorized: (err: ApiError) => void = () => {};
export function onUnauthorized(listener: (err: ApiError) => void): void {
  unauthorized = listener;
}

/** A response's JSON body, or an ApiError with the API's error body. */
async function reply<T>(res: Response): Promise<T> {
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: "bad_response", message: text.slice(0, 300), problems: [] };
  }
  if (!res.ok) {
    const err = (parsed ?? {}) as Partial<ErrorBody>;
    const failure = new ApiError(res.status, { error: err.error ?? "error", message: err.message ?? `HTTP ${res.status}`, problems: err.problems ?? [] });
    if (res.status === 401) unauthorized(failure);
    throw failure;
  }
  return parsed as T;
}

/** A GET that sends the ETag of the copy held: null when that copy is current (304).
 * `cache`: "no-store" when we hold the copy; "no-cache" lets the browser revalidate the copy
 * in its HTTP cache itself (a 304 then reads as that copy, a 200). */
async function conditional<T>(path: string, query: Record<string, string | number | undefined | null>, etag: string | null, cache: RequestCache = "no-store"): Promise<{ body: T; etag: string | null } | null> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders() };
  if (etag) headers["If-None-Match"] = etag;
  const res = await send(url(path, query), { headers, cache });
  if (res.status === 304) return null;
  return { body: await reply<T>(res), etag: res.headers.get("ETag") };
}

/** The run as of `held` (null: none yet), fetched as a delta since its revision and only if
 * it changed; returns `held` itself when nothing did. */
export async function refreshRun(id: string, held: { detail: RunDetail; etag: string | null } | null): Promise<{ detail: RunDetail; etag: string | null }> {
  const since = held?.detail.revision ?? undefined;
  // the first fetch (the whole view) may come from the browser's cache, revalidated: a
  // reload or another visit of a run that has not changed since costs a 304, not the view
  const got = await conditional<RunDetail>(`runs/${encodeURIComponent(id)}`, { since }, held?.etag ?? null, held ? "no-store" : "no-cache");
  if (got === null) return held!;
  const d = got.body;
  if (d.full !== false || !held) return { detail: d, etag: got.etag };
  return { detail: { ...d, full: true, tasks: { ...held.detail.tasks, ...d.tasks } }, etag: got.etag };
}

/** A run's task states as of a revision of its view, and that view's ETag: what its graph
 * draws, kept current without the whole view. */
export interface HeldStates { run: RunView; states: Record<string, TaskState>; revision: number; etag: string | null }

/** `held` brought up to date by a delta of the run view since its revision (the tasks that
 * changed; a 304 when none did): the graph's poll, which never asks for the whole view (at
 * 2,000 tasks ~1 MB of JSON the server builds and the page parses, for nothing the graph
 * draws). Returns `held` itself when nothing changed. */
export async function refreshStates(id: string, held: HeldStates): Promise<HeldStates> {
  const got = await conditional<RunDetail>(`runs/${encodeURIComponent(id)}`, { since: held.revision }, held.etag);
  if (got === null) return held;
  const d = got.body;
  const states = d.full === false ? { ...held.states } : {};
  for (const [task, view] of Object.entries(d.tasks)) states[task] = view.state;
  return { run: d.run, states, revision: d.revision ?? held.revision, etag: got.etag };
}

const enc = encodeURIComponent;
/** Bytes of a log fetched at a time: a huge log never arrives (or renders) all at once. */
export const LOG_PAGE = 256 * 1024;

/** The states an operator may mark a task with (`POST runs/{id}/tasks/{task}/mark`). */
export type MarkState = "succeeded" | "skipped" | "failed";

export const api = {
  me: (project: string) => request<Me>("GET", "me", { project }),
  workflows: (project: string, after?: string, limit = 100) =>
    request<{ workflows: WorkflowSummary[]; next: string | null }>("GET", "workflows", { project, after, limit }),
  workflow: (project: string, name: string, version?: number) =>
    version
      ? request<VersionDetail>("GET", `workflows/${enc(name)}/versions/${version}`, { project })
      : request<VersionDetail>("GET", `workflows/${enc(name)}`, { project }),
  versions: (project: string, name: string, before?: number) =>
    request<{ versions: VersionSummary[]; next: number | null }>("GET", `workflows/${enc(name)}/versions`, { project, before, limit: 50 }),
  diff: (project: string, name: string, from: number, to: number) =>
    request<{ from: number; to: number; changed: boolean; diff: string }>("GET", `workflows/${enc(name)}/diff`, { project, from, to }),
  apply: (source: string) => request<VersionDetail & { created: boolean }>("POST", "workflows", {}, { source }),
  pauseWorkflow: (project: string, name: string, paused: boolean) =>
    request<VersionDetail>("POST", `workflows/${enc(name)}/${paused ? "pause" : "unpause"}`, { project }),
  trigger: (project: string, name: string, params: Record<string, unknown>, logicalDate?: string) =>
    request<RunDetail>("POST", `workflows/${enc(name)}/runs`, { project }, logicalDate ? { params, logical_date: logicalDate } : { params }),
  runs: (q: { project: string; workflow?: string; state?: string; before?: string; limit?: number }) =>
    request<{ runs: RunView[]; next: string | null }>("GET", "runs", { ...q }),
  run: (id: string) => request<RunDetail>("GET", `runs/${enc(id)}`),
  runStates: (id: string) => request<RunStates>("GET", `runs/${enc(id)}/states`),
  /** where to draw each task of the run's workflow version (the same for every run of it) */
  runLayout: (id: string) => request<ServedLayout>("GET", `runs/${enc(id)}/layout`),
  /** the version's layout; `stored`: where ELK's is kept (the version's `layout`) */
  versionLayout: (project: string, name: string, version: number, stored?: string | null) =>
    request<ServedLayout>("GET", `workflows/${enc(name)}/versions/${version}/layout`, { project })
      .then((s) => ({ ...s, stored: stored ?? null })),
  timeline: (id: string) => request<Timeline>("GET", `runs/${enc(id)}/timeline`),
  runAction: (id: string, action: "pause" | "resume" | "stop") => request<RunView>("POST", `runs/${enc(id)}/${action}`),
  rerun: (id: string, from?: string) => request<RunView>("POST", `runs/${enc(id)}/rerun`, {}, from ? { from } : {}),
  mark: (id: string, task: string, state: MarkState) =>
    request<RunView>("POST", `runs/${enc(id)}/tasks/${enc(task)}/mark`, {}, { state }),
  createBackfill: (project: string, name: string, body: BackfillRequest) =>
    request<BackfillView>("POST", `workflows/${enc(name)}/backfills`, { project }, body),
  backfills: (project: string, workflow?: string) =>
    request<{ backfills: BackfillView[] }>("GET", "backfills", { project, workflow, limit: 50 }),
  backfill: (id: string) => request<BackfillView>("GET", `backfills/${enc(id)}`),
  backfillAction: (id: string, action: "pause" | "resume" | "cancel") =>
    request<BackfillView>("POST", `backfills/${enc(id)}/${action}`),
  channels: (project: string) => request<{ channels: AlertChannel[] }>("GET", "alerts/channels", { project }),
  putChannel: (project: string, name: string, type: string, settings: Record<string, string>) =>
    request<AlertChannel>("PUT", `alerts/channels/${enc(name)}`, { project }, { type, settings }),
  deleteChannel: (project: string, name: string) => request<unknown>("DELETE", `alerts/channels/${enc(name)}`, { project }),
  groups: (project: string) => request<{ groups: AlertGroup[] }>("GET", "alerts/groups", { project }),
  putGroup: (project: string, name: string, channels: string[]) =>
    request<AlertGroup>("PUT", `alerts/groups/${enc(name)}`, { project }, { channels }),
  deleteGroup: (project: string, name: string) => request<unknown>("DELETE", `alerts/groups/${enc(name)}`, { project }),
  testGroup: (project: string, name: string) =>
    request<{ deliveries: Delivery[] }>("POST", `alerts/groups/${enc(name)}/test`, { project }),
  deliveries: (q: { project: string; run_id?: string; status?: string; cursor?: number; limit?: number }) =>
    request<{ deliveries: Delivery[]; next: number | null }>("GET", "alerts", { ...q }),
  connections: (project: string) => request<{ connections: Connection[] }>("GET", "connections", { project }),
  putConnection: (project: string, name: string, type: string, settings: Record<string, string>) =>
    request<Connection>("PUT", `connections/${enc(name)}`, { project }, { type, settings }),
  deleteConnection: (project: string, name: string) => request<unknown>("DELETE", `connections/${enc(name)}`, { project }),
  testConnection: (project: string, name: string) =>
    request<ConnectionTest>("POST", `connections/${enc(name)}/test`, { project }),
  secrets: (project: string) => request<{ project: string; secrets: { name: string }[] }>("GET", "secrets", { project }),
  // the value goes in once and never comes back: the reply names the secret only
  putSecret: (project: string, name: string, value: string) =>
    request<{ name: string; created: boolean }>("PUT", `secrets/${enc(name)}`, { project }, { value }),
  deleteSecret: (project: string, name: string) => request<unknown>("DELETE", `secrets/${enc(name)}`, { project }),
  variables: (project: string) => request<{ project: string; variables: Variable[] }>("GET", "variables", { project }),
  putVariable: (project: string, name: string, value: string) =>
    request<Variable>("PUT", `variables/${enc(name)}`, { project }, { value }),
  deleteVariable: (project: string, name: string) => request<unknown>("DELETE", `variables/${enc(name)}`, { project }),
  resources: (project: string, prefix = "") =>
    request<{ project: string; prefix: string; resources: ResourceFile[] }>("GET", "resources", { project, prefix }),
  resourceVersions: (project: string, path: string) =>
    request<{ project: string; path: string; versions: ResourceFile[] }>("GET", "resources/versions", { project, path }),
  // the file's bytes as the body, as they are (the API bounds the size and names it)
  async uploadResource(project: string, path: string, file: Blob): Promise<ResourceFile & { project: string }> {
    const res = await send(url("resources/file", { project, path }), {
      method: "PUT",
      body: file,
      headers: { Accept: "application/json", "Content-Type": "application/octet-stream", ...authHeaders() },
    });
    return reply(res);
  },
  async downloadResource(project: string, path: string, version?: string): Promise<Blob> {
    const res = await send(url("resources/file", { project, path, version }), {
      headers: { Accept: "application/octet-stream", ...authHeaders() },
    });
    if (!res.ok) return reply<never>(res);
    return res.blob();
  },
  deleteResource: (project: string, path: string) => request<unknown>("DELETE", "resources/file", { project, path }),
  pools: (project: string) => request<{ pools: PoolView[] }>("GET", "pools", { project }),
  pool: (name: string, project: string | null) => request<PoolDetail>("GET", `pools/${enc(name)}`, { project }),
  putPool: (name: string, project: string | null, slots: number) =>
    request<PoolView>("PUT", `pools/${enc(name)}`, { project }, { slots }),
  deletePool: (name: string, project: string | null) => request<PoolView>("DELETE", `pools/${enc(name)}`, { project }),
  forceStart: (id: string, task: string) =>
    request<{ state: string; attempt: number }>("POST", `runs/${enc(id)}/tasks/${enc(task)}/force-start`),
  async log(id: string, task: string, attempt: number, offset: number, limit = LOG_PAGE): Promise<LogPage> {
    const res = await send(url(`runs/${enc(id)}/tasks/${enc(task)}/attempts/${attempt}/log`, { offset, limit }), { headers: authHeaders() });
    const text = await res.text();
    if (!res.ok) {
      let body: ErrorBody = { error: "error", message: text, problems: [] };
      try { body = JSON.parse(text) as ErrorBody; } catch { /* plain text */ }
      const failure = new ApiError(res.status, body);
      if (res.status === 401) unauthorized(failure);
      throw failure;
    }
    return { text, next: Number(res.headers.get("X-Next-Offset") ?? offset), size: Number(res.headers.get("X-Log-Size") ?? 0) };
  },
};

/** One version of a project's resource file. */
export interface ResourceFile { path: string; version: string; size: number; sha256: string; created_at: string }
// a pool: `project` null for a global one; `used` may exceed `slots` after a force start
export type PoolView = { name: string; project: string | null; slots: number; used: number; waiting: number | null };
export type PoolTask = { run_id: string; task_id: string; project: string; workflow: string; priority: number; pool_slots: number; started_at: string | null };
export type PoolDetail = PoolView & { running_tasks: PoolTask[]; waiting_tasks: PoolTask[]; hidden: number };

export const TERMINAL_RUN: RunState[] = ["succeeded", "failed", "stopped"];

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A duration as people read it: "850 ms", "12.3 s", "2m 5s", "1h 4m". Rounded once, to the
 * unit shown, so a carry reaches the larger unit ("2m 0s", never "1m 60s" or "60.0 s"). */
export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  const ms = Math.round(seconds * 1000);
  if (ms < 1000) return `${ms} ms`;
  const tenths = Math.round(seconds * 10);
  if (tenths < 600) return `${(tenths / 10).toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${whole % 60}s`;
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function fmtClock(iso: string | null | undefined): string {
  if (!iso) return "—";
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A run page's first two requests: the run's task states and its layout, all its graph needs
 * to be drawn. The page asks for the whole run view once both are in, so the server (one
 * request at a time) answers these two first. */
export interface FirstRequests { states: Promise<RunStates>; layout: Promise<ServedLayout> }

const early = new Map<string, FirstRequests>();

/** Ask for a run page's first requests as the script starts, before /me and the first render;
 * `firstRequests` hands them to the page. */
export function prefetchRun(id: string): void {
  if (early.has(id)) return;
  const asked = { states: api.runStates(id), layout: api.runLayout(id) };
  asked.states.catch(() => undefined);
  asked.layout.catch(() => undefined);
  early.set(id, asked);
}

/** The run page's first requests: those asked for early (asked again if they failed, e.g.
 * before a token was given), else asked now. The layout names where ELK's is kept, from the
 * states. */
export function firstRequests(id: string): FirstRequests {
  const got = early.get(id);
  early.delete(id);
  const states = got ? got.states.catch(() => api.runStates(id)) : api.runStates(id);
  const served = got ? got.layout.catch(() => api.runLayout(id)) : api.runLayout(id);
  const layout = Promise.all([served, states.catch(() => null)])
    .then(([s, st]) => ({ ...s, stored: st?.layout ?? null }));
  // made as the page renders, taken up by its effects a frame later: a refusal landing before
  // then is still the page's to show, not an uncaught rejection
  states.catch(() => undefined);
  layout.catch(() => undefined);
  return { states, layout };
}

// --- ELK's layout of a version, kept by the server (GET/PUT the states view's `layout` URL):
// laid out once by the first visit, downloaded by every later one; the URL names the graph's
// digest, so what it answers never changes (the browser's HTTP cache keeps it too).

/** The layout as the server keeps it: parallel arrays (index i is tasks[i]), edges as flat
 * pairs of task indices (parent, child), points[k] the polyline of edge k. */
export interface StoredLayout {
  format: 1; tasks: string[]; x: number[]; y: number[]; w: number[]; h: number;
  edges: number[]; points: number[][]; width: number; height: number;
}

const kept = new Map<string, Promise<StoredLayout | null>>();

/** The stored layout at `at` (null: none yet, or unreadable), asked for once per page. */
function keptLayout(at: string): Promise<StoredLayout | null> {
  let found = kept.get(at);
  if (!found) {
    found = request<StoredLayout>("GET", at).catch(() => null);
    kept.set(at, found);
  }
  return found;
}

/** The layout kept at `at` as the graph draws it, if it draws exactly the tasks `ids`. */
export async function downloadLayout(at: string, ids: string[]): Promise<Layout | null> {
  const started = performance.now();
  const s = await keptLayout(at);
  if (!s || s.tasks.length !== ids.length) return null;
  const nodes: GNode[] = s.tasks.map((id, i) => ({ id, x: s.x[i], y: s.y[i], w: s.w[i], h: s.h, label: id }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  if (!ids.every((id) => byId.has(id))) return null;
  const edges = s.points.map((pts, k) => withBounds(s.tasks[s.edges[2 * k]], s.tasks[s.edges[2 * k + 1]], pts));
  return { nodes, byId, edges, width: s.width, height: s.height, ms: Math.round(performance.now() - started) };
}

const tenth = (v: number) => Math.round(v * 10) / 10;

/** Whether the caller may store a project's layouts (editor and up, as `workflow.apply`: the
 * server's PUT asks for the edit permission), as each project's GET /me answered. */
const layoutWriters = new Map<string, boolean>();
export function mayStoreLayouts(project: string, may: boolean): void {
  layoutWriters.set(project, may);
}
/** Another user (sign-out, sign-in): what the last one's roles allowed is forgotten. */
export function forgetLayoutWriters(): void {
  layoutWriters.clear();
}

/** Send ELK's layout to be kept at `at` (once: the server keeps the first; a refusal only
 * means the next visit lays out again). Not sent where the caller's role is known to be
 * refused (a viewer's or operator's browser keeps its layout for itself). */
export async function uploadLayout(at: string, l: Layout): Promise<void> {
  const project = new URL(at, window.location.href).searchParams.get("project") ?? "default";
  if (layoutWriters.get(project) === false) return;
  const index = new Map(l.nodes.map((n, i) => [n.id, i]));
  const body: StoredLayout = {
    format: 1, tasks: l.nodes.map((n) => n.id), x: l.nodes.map((n) => tenth(n.x)),
    y: l.nodes.map((n) => tenth(n.y)), w: l.nodes.map((n) => tenth(n.w)), h: l.nodes[0]?.h ?? 28,
    edges: l.edges.flatMap((e) => [index.get(e.from) ?? -1, index.get(e.to) ?? -1]),
    points: l.edges.map((e) => e.pts.map(tenth)), width: tenth(l.width), height: tenth(l.height),
  };
  try {
    await request("PUT", at, {}, body);
    kept.set(at, Promise.resolve(body));
  } catch { /* not kept: laid out again next time */ }
}
