// The graph's layout. The server computes a quick layout once per workflow version
// (GET /runs/{id}/layout, /workflows/{name}/versions/{v}/layout: stratoflow/api/graph_layout.py)
// and it is drawn at once; up to ELK_UP_TO tasks, elkjs (ELK "layered", a Sugiyama-style
// layout) then refines it in a Web Worker, once per workflow version: kept in memory for the
// page and in the browser's IndexedDB across visits (a version never changes, so its layout
// never goes stale); a run's live updates only recolour nodes, they never lay out again, and
// a live run's page does not start ELK at all until the run ends (layoutGraph's `refine`).
import ELK from "elkjs/lib/elk-api.js";
import type { ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api.js";
import workerUrl from "elkjs/lib/elk-worker.min.js?url";
import { downloadLayout, uploadLayout } from "../api";

export interface GNode { id: string; x: number; y: number; w: number; h: number; label: string }
export interface GEdge { from: string; to: string; pts: number[]; x0: number; y0: number; x1: number; y1: number }
export interface Layout { nodes: GNode[]; byId: Map<string, GNode>; edges: GEdge[]; width: number; height: number; ms: number }

export const NODE_H = 28;

/** The layout as the server sends it: parallel arrays (index i is tasks[i]), edges as flat
 * pairs of task indices (parent, child). */
export interface ServedLayout {
  format: number; tasks: string[]; x: number[]; y: number[]; w: number[]; h: number;
  edges: number[]; width: number; height: number;
  /** where the server keeps ELK's layout of this version (the states view's `layout`) */
  stored?: string | null;
}

let elk: InstanceType<typeof ELK> | null = null;

/** Where a layout came from: laid out by ELK now, read back from an earlier visit, downloaded
 * as another visit laid it out (kept by the server), or the server's (above ELK_UP_TO tasks). */
export type LayoutSource = "elk" | "stored" | "downloaded" | "served";

// ELK's layered layout did not finish within 15 minutes at 10,000 tasks (11 s at 2,000): above
// this many tasks the server's quick layout is the final one.
export const ELK_UP_TO = 4000;

/**
 * The final layout of a workflow version. With `refine: false` ELK is not started: the
 * layout comes from this page's memory, an earlier visit or the server's copy of another
 * visit's, or (above ELK_UP_TO) is the server's quick one; else the answer is null and the
 * caller draws the quick layout for now. A live run's page asks so: ELK's seconds of CPU at
 * 2,000 tasks would compete with the run itself on the same machine (issue 10, item 3); it
 * refines once the run has ended.
 */
export function layoutGraph(key: string, served: ServedLayout, quick: Layout, opts: { refine?: boolean } = {}): Promise<(Layout & { source: LayoutSource }) | null> {
  let found = cache.get(key);
  if (!found) {
    if (opts.refine === false) return kept(key, served, quick);
    found = storedOrComputed(key, served, quick);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
}

const cache = new Map<string, Promise<Layout & { source: LayoutSource }>>();

/** A final layout found without laying out: the server's (too large for ELK), one stored by an
 * earlier visit, or one another visit laid out and the server keeps (downloaded). */
async function kept(key: string, served: ServedLayout, quick: Layout): Promise<(Layout & { source: LayoutSource }) | null> {
  if (served.tasks.length > ELK_UP_TO) return { ...quick, source: "served" };
  const stored = await readStored(key, served.tasks);
  if (stored) return { ...stored, source: "stored" };
  const got = served.stored ? await downloadLayout(served.stored, served.tasks) : null;
  if (!got) return null;
  void writeStored(key, got);
  return { ...got, source: "downloaded" };
}

async function storedOrComputed(key: string, served: ServedLayout, quick: Layout): Promise<Layout & { source: LayoutSource }> {
  const found = await kept(key, served, quick);
  if (found) return found;
  const computed = await compute(quick);
  void writeStored(key, computed);
  if (served.stored) void uploadLayout(served.stored, computed);
  return { ...computed, source: "elk" };
}

// --- the layouts kept across visits: IndexedDB, one record per "project/workflow/version" ---
// The record also names the layout's format, so a change to it ignores older records; and its
// task ids are checked against the workflow's, so a record can never draw the wrong graph.
const DB_NAME = "stratoflow-layouts";
const STORE = "layouts";
const FORMAT = 1;
const KEEP = 50; // records kept; the least recently written go first

interface StoredLayout {
  key: string; format: number; written: number;
  nodes: GNode[]; edges: { from: string; to: string; pts: number[] }[]; width: number; height: number; ms: number;
}

function openDb(): Promise<IDBDatabase | null> {
  if (typeof indexedDB === "undefined") return Promise.resolve(null);
  return new Promise((ok) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "key" }).createIndex("written", "written");
    req.onsuccess = () => ok(req.result);
    req.onerror = () => ok(null); // private mode, quota: lay out as before
    req.onblocked = () => ok(null);
  });
}

async function readStored(key: string, ids: string[]): Promise<Layout | null> {
  const db = await openDb();
  if (!db) return null;
  const rec = await new Promise<StoredLayout | undefined>((ok) => {
    const req = db.transaction(STORE).objectStore(STORE).get(key);
    req.onsuccess = () => ok(req.result as StoredLayout | undefined);
    req.onerror = () => ok(undefined);
  });
  db.close();
  if (!rec || rec.format !== FORMAT || rec.nodes.length !== ids.length) return null;
  const byId = new Map(rec.nodes.map((n) => [n.id, n]));
  if (!ids.every((id) => byId.has(id))) return null;
  return { nodes: rec.nodes, byId, edges: rec.edges.map((e) => withBounds(e.from, e.to, e.pts)), width: rec.width, height: rec.height, ms: rec.ms };
}

async function writeStored(key: string, l: Layout): Promise<void> {
  const db = await openDb();
  if (!db) return;
  const rec: StoredLayout = {
    key, format: FORMAT, written: Date.now(), nodes: l.nodes,
    edges: l.edges.map((e) => ({ from: e.from, to: e.to, pts: e.pts })), width: l.width, height: l.height, ms: l.ms,
  };
  await new Promise<void>((ok) => {
    const tx = db.transaction(STORE, "readwrite");
    const store = tx.objectStore(STORE);
    store.put(rec);
    const count = store.count();
    count.onsuccess = () => {
      // drop the oldest records beyond KEEP
      let extra = count.result - KEEP;
      if (extra <= 0) return;
      store.index("written").openCursor().onsuccess = (ev) => {
        const cur = (ev.target as IDBRequest<IDBCursorWithValue | null>).result;
        if (cur && extra-- > 0) { cur.delete(); cur.continue(); }
      };
    };
    tx.oncomplete = () => ok();
    tx.onerror = () => ok();
    tx.onabort = () => ok();
  });
  db.close();
}

export function withBounds(from: string, to: string, pts: number[]): GEdge {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]);
    y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]);
  }
  return { from, to, pts, x0, y0, x1, y1 };
}

/** ELK's layout of the graph the server's layout draws (its tasks, their widths, its edges). */
async function compute(quick: Layout): Promise<Layout> {
  const started = performance.now();
  elk ??= new ELK({ workerUrl, workerFactory: (u?: string) => new Worker(u ?? workerUrl) });
  const big = quick.nodes.length > 300;
  const children: ElkNode[] = quick.nodes.map((n) => ({ id: n.id, width: n.w, height: NODE_H }));
  const edges: ElkExtendedEdge[] = quick.edges.map((e) => ({ id: `${e.from}->${e.to}`, sources: [e.from], targets: [e.to] }));
  const input: ElkNode = {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.spacing.nodeNode": "12",
      "elk.layered.spacing.nodeNodeBetweenLayers": "48",
      "elk.spacing.componentComponent": "24",
      // large graphs: fewer crossing-minimisation passes and straight polylines keep a
      // 2,000-task layout to a few seconds; small graphs get the thorough defaults
      ...(big ? { "elk.layered.thoroughness": "1", "elk.edgeRouting": "POLYLINE" } : { "elk.edgeRouting": "ORTHOGONAL" }),
    },
    children,
    edges,
  };
  const graph: ElkNode = await elk.layout(input);
  const nodes: GNode[] = (graph.children ?? []).map((n) => ({
    id: n.id, x: n.x ?? 0, y: n.y ?? 0, w: n.width ?? 60, h: n.height ?? NODE_H, label: n.id,
  }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const out: GEdge[] = [];
  for (const e of (graph.edges ?? []) as ElkExtendedEdge[]) {
    const pts: number[] = [];
    for (const s of e.sections ?? []) {
      pts.push(s.startPoint.x, s.startPoint.y);
      for (const b of s.bendPoints ?? []) pts.push(b.x, b.y);
      pts.push(s.endPoint.x, s.endPoint.y);
    }
    if (pts.length < 4) {
      const a = byId.get(e.sources[0]), b = byId.get(e.targets[0]);
      if (!a || !b) continue;
      pts.push(a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2);
    }
    out.push(withBounds(e.sources[0], e.targets[0], pts));
  }
  return { nodes, byId, edges: out, width: graph.width ?? 0, height: graph.height ?? 0, ms: Math.round(performance.now() - started) };
}

/** The server's layout as the graph draws it: a box per task, straight edges from a parent's
 * right side to a child's left. Linear in tasks + edges. */
export function fromServed(s: ServedLayout): Layout {
  const started = performance.now();
  const nodes: GNode[] = s.tasks.map((id, i) => ({ id, x: s.x[i], y: s.y[i], w: s.w[i], h: s.h, label: id }));
  const edges: GEdge[] = [];
  for (let i = 0; i + 1 < s.edges.length; i += 2) {
    const p = nodes[s.edges[i]], n = nodes[s.edges[i + 1]];
    if (p && n) edges.push(withBounds(p.id, n.id, [p.x + p.w, p.y + p.h / 2, n.x, n.y + n.h / 2]));
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  return { nodes, byId, edges, width: s.width, height: s.height, ms: Math.round(performance.now() - started) };
}

/** A column of the layout (a layer of the DAG): its tasks and the box around them. */
export interface Group { ids: string[]; x0: number; y0: number; x1: number; y1: number }

/**
 * The layout's columns: tasks whose horizontal extents overlap share a column. Both layouts
 * place a layer's tasks in one column and keep columns apart, so this finds the DAG's layers
 * from the drawing alone, whichever layout drew it. O(n log n), once per layout.
 */
export function columnsOf(l: Layout): Group[] {
  const sorted = [...l.nodes].sort((a, b) => a.x - b.x);
  const groups: Group[] = [];
  let g: Group | null = null;
  for (const n of sorted) {
    if (!g || n.x > g.x1) {
      g = { ids: [], x0: n.x, y0: n.y, x1: n.x + n.w, y1: n.y + n.h };
      groups.push(g);
    }
    g.ids.push(n.id);
    g.x1 = Math.max(g.x1, n.x + n.w);
    g.y0 = Math.min(g.y0, n.y);
    g.y1 = Math.max(g.y1, n.y + n.h);
  }
  return groups;
}
