// Automatic DAG layout with elkjs (ELK "layered", a Sugiyama-style layout), computed in a Web
// Worker so that laying out 2,000 tasks never blocks the page. Layouts are cached per
// workflow version: a run's live updates only recolour nodes, they never lay out again.
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
const cache = new Map<string, Promise<Layout>>();

export type Deps = Record<string, { depends_on?: string[] }>;

export function layoutGraph(key: string, tasks: Deps): Promise<Layout> {
  let found = cache.get(key);
  if (!found) {
    found = compute(tasks);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
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
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < pts.length; i += 2) {
      x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]);
      y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]);
    }
    out.push({ from: e.sources[0], to: e.targets[0], pts, x0, y0, x1, y1 });
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
      const pts = [p.x + p.w, p.y + p.h / 2, n.x, n.y + n.h / 2];
      edges.push({ from: dep, to: n.id, pts, x0: Math.min(pts[0], pts[2]), y0: Math.min(pts[1], pts[3]), x1: Math.max(pts[0], pts[2]), y1: Math.max(pts[1], pts[3]) });
    }
  }
  return { nodes, byId, edges, width: Math.max(x - 48, 0), height, ms: Math.round(performance.now() - started) };
}
