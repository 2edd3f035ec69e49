// A uniform grid over the boxes of a layout's tasks and edges, so that a frame visits only
// what may be in view instead of every task and edge of the graph (10,000 tasks, 30,000 edges).
import type { GEdge, GNode, Layout } from "./layout";

/** Items (by index) bucketed into the cells their boxes overlap. */
export class Grid {
  private readonly cols: number;
  private readonly rows: number;
  private readonly cells: number[][];
  private readonly seen: Uint32Array;
  private query = 0;

  constructor(
    items: number, width: number, height: number,
    private readonly cellW: number, private readonly cellH: number,
  ) {
    this.cols = Math.max(1, Math.ceil(Math.max(width, 1) / cellW));
    this.rows = Math.max(1, Math.ceil(Math.max(height, 1) / cellH));
    this.cells = Array.from({ length: this.cols * this.rows }, () => []);
    this.seen = new Uint32Array(items);
  }

  private col(x: number): number { return Math.min(this.cols - 1, Math.max(0, Math.floor(x / this.cellW))); }
  private row(y: number): number { return Math.min(this.rows - 1, Math.max(0, Math.floor(y / this.cellH))); }

  insert(item: number, x0: number, y0: number, x1: number, y1: number): void {
    const c1 = this.col(x1), r1 = this.row(y1);
    for (let r = this.row(y0); r <= r1; r++) {
      for (let c = this.col(x0); c <= c1; c++) this.cells[r * this.cols + c].push(item);
    }
  }

  /** Each item whose cells overlap the rectangle, once (a candidate: test its own box). */
  visit(x0: number, y0: number, x1: number, y1: number, each: (item: number) => void): void {
    if (x1 < 0 || y1 < 0 || x0 > this.cols * this.cellW || y0 > this.rows * this.cellH) return;
    const stamp = ++this.query;
    const c0 = this.col(x0), c1 = this.col(x1), r1 = this.row(y1);
    for (let r = this.row(y0); r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        for (const item of this.cells[r * this.cols + c]) {
          if (this.seen[item] === stamp) continue;
          this.seen[item] = stamp;
          each(item);
        }
      }
    }
  }
}

export interface SpatialIndex { nodes: Grid; edges: Grid }

/**
 * Tasks in a 2-D grid of cells about as large as a few tasks' share of the drawing; edges in
 * vertical strips of the same width (an edge of a layered layout is short across and may be
 * long down, so a strip holds it once), each candidate then tested exactly (edgeInRect).
 */
export function indexLayout(l: Layout): SpatialIndex {
  const n = Math.max(l.nodes.length, 1);
  const cell = Math.max(128, 2 * Math.sqrt((Math.max(l.width, 1) * Math.max(l.height, 1)) / n));
  const nodes = new Grid(l.nodes.length, l.width, l.height, cell, cell);
  l.nodes.forEach((g, i) => nodes.insert(i, g.x, g.y, g.x + g.w, g.y + g.h));
  const edges = new Grid(l.edges.length, l.width, l.height, cell, Infinity);
  l.edges.forEach((e, i) => edges.insert(i, e.x0, e.y0, e.x1, e.y1));
  return { nodes, edges };
}

export function nodeInRect(g: GNode, x0: number, y0: number, x1: number, y1: number): boolean {
  return !(g.x + g.w < x0 || g.x > x1 || g.y + g.h < y0 || g.y > y1);
}

/** The length of the edge's polyline inside the rectangle: 0 when it does not cross it. */
export function edgeInRect(e: GEdge, x0: number, y0: number, x1: number, y1: number): number {
  if (e.x1 < x0 || e.x0 > x1 || e.y1 < y0 || e.y0 > y1) return 0;
  const p = e.pts;
  let inside = 0;
  for (let i = 0; i + 3 < p.length; i += 2) inside += segmentInRect(p[i], p[i + 1], p[i + 2], p[i + 3], x0, y0, x1, y1);
  return inside;
}

/** The length of a segment inside the rectangle (Liang-Barsky clipping); 0 when outside. */
export function segmentInRect(
  ax: number, ay: number, bx: number, by: number, x0: number, y0: number, x1: number, y1: number,
): number {
  const dx = bx - ax, dy = by - ay;
  let t0 = 0, t1 = 1;
  const clip = (p: number, q: number): boolean => {
    if (p === 0) return q >= 0; // parallel to this side: inside it or not at all
    const t = q / p;
    if (p < 0) { if (t > t1) return false; if (t > t0) t0 = t; }
    else { if (t < t0) return false; if (t < t1) t1 = t; }
    return true;
  };
  if (!(clip(-dx, ax - x0) && clip(dx, x1 - ax) && clip(-dy, ay - y0) && clip(dy, y1 - ay) && t0 <= t1)) return 0;
  // a point inside (a zero-length segment, or one touching a corner) still counts as crossing
  return Math.max((t1 - t0) * Math.hypot(dx, dy), Number.MIN_VALUE);
}
