// Automatic DAG layout with elkjs (ELK "layered", a Sugiyama-style layout), computed in a Web
// Worker so that laying out 2,000 tasks never blocks the page. Layouts are computed once per
// workflow version: kept in memory for the page and in the browser's IndexedDB across visits
// (a version never changes, so its layout never goes stale); a run's live updates only
// recolour nodes, they never lay out again.
import ELK from "elkjs/lib/elk-api.js";
import type { ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api.js";
import workerUrl from "elkjs/lib/elk-worker.min.js?url";

export interface GNode { id: string; x: number; y: number; w: number; h: number; label: string }
export interface GEdge { from: string; to: string; pts: number[]; x0: number; y0: number; x1: number; y1: number }
export interface Layout { nodes: GNode[]; byId: Map<string, GNode>; edges: GEdge[]; width: number; height: number; ms: number }

export const NODE_H = 28;
const CHAR_W = 7.2; // 12px sans-serif, roughly
export const nodeWidth = (id: string): number => Math.max(64, Math.min(220, 26 + id.length * CHAR_W));

let elk: InstanceType<typeof ELK> | null = null;

export type Deps = Record<string, { depends_on?: string[] }>;

/** Where a layout came from: laid out now, or read back from an earlier visit. */
export type LayoutSource = "elk" | "stored" | "quick";

// ELK's layered layout did not finish within 15 minutes at 10,000 tasks (11 s at 2,000): above
// this many tasks the quick layout is the final one.
export const ELK_UP_TO = 4000;

export function layoutGraph(key: string, tasks: Deps): Promise<Layout & { source: LayoutSource }> {
  let found = cache.get(key);
  if (!found) {
    found = storedOrComputed(key, tasks);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
}

const cache = new Map<string, Promise<Layout & { source: LayoutSource }>>();

async function storedOrComputed(key: string, tasks: Deps): Promise<Layout & { source: LayoutSource }> {
  if (Object.keys(tasks).length > ELK_UP_TO) return { ...quickLayout(tasks), source: "quick" };
  const stored = await readStored(key, tasks);
  if (stored) return { ...stored, source: "stored" };
  const computed = await compute(tasks);
  void writeStored(key, computed);
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

async function readStored(key: string, tasks: Deps): Promise<Layout | null> {
  const db = await openDb();
  if (!db) return null;
  const rec = await new Promise<StoredLayout | undefined>((ok) => {
    const req = db.transaction(STORE).objectStore(STORE).get(key);
    req.onsuccess = () => ok(req.result as StoredLayout | undefined);
    req.onerror = () => ok(undefined);
  });
  db.close();
  const ids = Object.keys(tasks);
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

function withBounds(from: string, to: string, pts: number[]): GEdge {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]);
    y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]);
  }
  return { from, to, pts, x0, y0, x1, y1 };
}

async function compute(tasks: Deps): Promise<Layout> {
  const started = performance.now();
  elk ??= new ELK({ workerUrl, workerFactory: (u?: string) => new Worker(u ?? workerUrl) });
  const ids = Object.keys(tasks);
  const big = ids.length > 300;
  const children: ElkNode[] = ids.map((id) => ({ id, width: nodeWidth(id), height: NODE_H }));
  const edges: ElkExtendedEdge[] = [];
  for (const id of ids) {
    for (const dep of tasks[id].depends_on ?? []) {
      if (dep in tasks) edges.push({ id: `${dep}->${id}`, sources: [dep], targets: [id] });
    }
  }
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

/**
 * An instant, rougher layout for large graphs, shown while ELK works: each task in the column
 * of its longest path from a root, columns ordered by the mean row of each task's parents
 * (one barycentre sweep), straight edges. Linear in tasks + edges.
 */
export function quickLayout(tasks: Deps): Layout {
  const started = performance.now();
  const ids = Object.keys(tasks);
  const rank = new Map<string, number>();
  const rankOf = (root: string): number => {
    // iterative DFS: a 2,000-deep chain must not overflow the stack
    const stack: string[] = [root];
    while (stack.length) {
      const id = stack[stack.length - 1];
      if (rank.has(id)) { stack.pop(); continue; }
      const deps = (tasks[id].depends_on ?? []).filter((d) => d in tasks);
      const pending = deps.filter((d) => !rank.has(d));
      if (pending.length) { stack.push(...pending); continue; }
      rank.set(id, deps.length ? 1 + Math.max(...deps.map((d) => rank.get(d) as number)) : 0);
      stack.pop();
    }
    return rank.get(root) as number;
  };
  const columns: string[][] = [];
  for (const id of ids) (columns[rankOf(id)] ??= []).push(id);
  const row = new Map<string, number>();
  columns.forEach((col, c) => {
    if (c > 0) {
      const mean = (id: string) => {
        const deps = (tasks[id].depends_on ?? []).filter((d) => row.has(d));
        return deps.length ? deps.reduce((s, d) => s + (row.get(d) as number), 0) / deps.length : 0;
      };
      const keyed = col.map((id) => [mean(id), id] as const).sort((a, b) => a[0] - b[0]);
      col.splice(0, col.length, ...keyed.map(([, id]) => id));
    }
    col.forEach((id, i) => row.set(id, i));
  });
  const nodes: GNode[] = [];
  let x = 0, height = 0;
  for (const col of columns) {
    const w = Math.max(...col.map(nodeWidth));
    col.forEach((id, i) => nodes.push({ id, x, y: i * (NODE_H + 12), w: nodeWidth(id), h: NODE_H, label: id }));
    height = Math.max(height, col.length * (NODE_H + 12));
    x += w + 48;
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges: GEdge[] = [];
  for (const n of nodes) {
    for (const dep of tasks[n.id].depends_on ?? []) {
      const p = byId.get(dep);
      if (!p) continue;
      edges.push(withBounds(dep, n.id, [p.x + p.w, p.y + p.h / 2, n.x, n.y + n.h / 2]));
    }
  }
  return { nodes, byId, edges, width: Math.max(x - 48, 0), height, ms: Math.round(performance.now() - started) };
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
