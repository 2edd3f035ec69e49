// The DAG drawn on a canvas: a grid index over tasks and edges (spatial.ts) gives each frame
// only what is inside the viewport, labels only when they are big enough to read, edges faded
// then dropped as tasks shrink, edges so dense they would cover the canvas drawn as stubs at
// their tasks, and below a few pixels a task each layer is drawn as one bar of its counts by
// state, so states stay visible at every zoom and 10,000 tasks pan and zoom smoothly. Wheel
// or +/- to zoom, drag to pan, click a task to select it, search to find one.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import type { TaskState } from "../api";
import { columnsOf, fromServed, layoutGraph, NODE_H, type GNode, type Layout, type ServedLayout } from "./layout";
import { edgeInRect, indexLayout, nodeInRect, type SpatialIndex } from "./spatial";

const QUICK_ABOVE = 150; // tasks: above this, draw the server's layout at once while ELK works

export const STATE_COLORS: Record<string, string> = {
  waiting: "#e5e7eb", queued: "#c7d2fe", running: "#60a5fa", up_for_retry: "#fcd34d",
  succeeded: "#4ade80", failed: "#f87171", skipped: "#f0abfc", upstream_failed: "#fb923c",
  stopped: "#9ca3af",
};
const DEFINITION_COLOR = "#dbeafe";
// Levels of detail, by a task's height on screen in pixels
const AGGREGATE_BELOW_PX = 4; // shorter: each layer is one bar of its counts by state
const FAINT_EDGES_BELOW_PX = 10; // shorter: edges faded, so they no longer hide the states
const MAX_FAINT_EDGES = 3000; // more in view than this while faded: not drawn, they cost the frame
const EDGE_INK_PER_PX = 1; // edges that would cover the canvas: drawn as stubs (a wash, and 15-35 ms of raster)
const STUB_PX = 32; // an edge's stub at a task, on screen
const STUB_MAX_ANGLE = Math.PI / 3;
const STUB_SIN = Math.sin(STUB_MAX_ANGLE), STUB_COS = Math.cos(STUB_MAX_ANGLE);
const STATE_ORDER = Object.keys(STATE_COLORS);

interface Props {
  /** "project/workflow/version": the layout is the version's */
  layoutKey: string;
  /** the version's layout from the server (started as early as the page can) */
  load: () => Promise<ServedLayout>;
  states?: Record<string, TaskState>;
  selected?: string | null;
  onSelect?: (id: string) => void;
  height?: number;
  /** lay out with ELK (default); false keeps the quick layout for now (a live run) */
  refine?: boolean;
}

interface View { k: number; x: number; y: number }

export function GraphView({ layoutKey, load, states, selected, onSelect, height = 480, refine = true }: Props) {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const [layout, setLayout] = useState<Layout | null>(null);
  const [final, setFinal] = useState(false);
  const [ids, setIds] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [query, setQuery] = useState("");
  const [matches, setMatches] = useState<string[]>([]);
  const view = useRef<View>({ k: 1, x: 0, y: 0 });
  // whether the view is Fit's (false once zoomed, panned or centred on a task), and the layout
  // it shows: when the final layout replaces the quick one, a view the user moved stays on
  // the task at its centre, at its zoom, instead of jumping back to Fit
  const atFit = useRef(true);
  const shown = useRef<Layout | null>(null);
  const frame = useRef(0);
  const firstDraw = useRef(true);
  const props = useRef({ states, selected, matches });
  props.current = { states, selected, matches };

  const groups = useMemo(() => (layout ? columnsOf(layout) : []), [layout]);
  // built on the first frame that draws single tasks (a graph opened at Fit shows layers)
  const indexed = useRef<{ of: Layout; index: SpatialIndex } | null>(null);
  const spatial = (l: Layout): SpatialIndex => {
    if (indexed.current?.of !== l) indexed.current = { of: l, index: indexLayout(l) };
    return indexed.current.index;
  };

  // the server's layout, and the quick one drawn from it
  const [base, setBase] = useState<{ key: string; served: ServedLayout; quick: Layout } | null>(null);
  useEffect(() => {
    let live = true;
    setError(null);
    setFinal(false);
    firstDraw.current = true;
    if (canvasRef.current) {
      delete canvasRef.current.dataset.ready;
      delete canvasRef.current.dataset.layout;
      delete canvasRef.current.dataset.layoutSource;
      delete canvasRef.current.dataset.refine;
    }
    setLayout(null);
    setIds(null);
    setBase(null);
    load().then(
      (served) => {
        if (!live) return;
        const quick = fromServed(served);
        setIds(served.tasks);
        if (served.tasks.length > QUICK_ABOVE) setLayout(quick);
        setBase({ key: layoutKey, served, quick });
      },
      (e: unknown) => { if (live) setError(String(e)); },
    );
    return () => { live = false; };
  }, [layoutKey]);

  // the final layout: ELK's (or a stored one); while `refine` is false ELK is not started and
  // the quick layout stays, the canvas marked data-refine="waiting"
  const finalFor = useRef<typeof base>(null);
  useEffect(() => {
    // the final layout is drawn once: a run that ends (refine turning true) does not redo it
    if (!base || base.key !== layoutKey || finalFor.current === base) return;
    let live = true;
    layoutGraph(base.key, base.served, base.quick, { refine }).then(
      (l) => {
        if (!live) return;
        const canvas = canvasRef.current;
        if (!l) {
          if (canvas) canvas.dataset.refine = "waiting";
          setLayout((old) => old ?? base.quick);
          return;
        }
        if (canvas) {
          delete canvas.dataset.refine;
          canvas.dataset.layoutSource = l.source;
        }
        finalFor.current = base;
        setLayout(l);
        setFinal(true);
      },
      (e: unknown) => { if (live) setError(String(e)); },
    );
    return () => { live = false; };
  }, [base, refine]);

  const draw = () => {
    frame.current = 0;
    const canvas = canvasRef.current;
    if (!canvas || !layout) return;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const dpr = window.devicePixelRatio || 1;
    const W = canvas.clientWidth, H = canvas.clientHeight;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
    }
    const { k, x, y } = view.current;
    const { states: st, selected: sel, matches: found } = props.current;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * x, dpr * y);
    const wx0 = -x / k, wy0 = -y / k, wx1 = (W - x) / k, wy1 = (H - y) / k;
    const taskPx = k * NODE_H;
    canvas.dataset.mode = taskPx < AGGREGATE_BELOW_PX ? "layers" : "tasks";
    canvas.dataset.taskPx = taskPx.toFixed(1); // a task's height on screen: the zoom level
    if (taskPx < AGGREGATE_BELOW_PX) {
      const represented = drawLayers(ctx, k, x, y, wx0, wy0, wx1, wy1, st, dpr);
      ring(ctx, k, found, "#f59e0b", 2);
      if (sel) ring(ctx, k, [sel], "#1d4ed8", 3);
      finishFrame(canvas, represented); // the tasks the visible bars stand for
      return;
    }
    // edges: those crossing the view (the grid's candidates, clipped exactly) and their ink,
    // the pixels they would cover on screen
    const faint = taskPx < FAINT_EDGES_BELOW_PX;
    const index = spatial(layout);
    const crossing: number[] = [];
    let ink = 0;
    // a line is 1 px wide on screen zoomed out, k px zoomed in (lineWidth below)
    const inkPerUnit = k * Math.max(k, 1);
    index.edges.visit(wx0, wy0, wx1, wy1, (i) => {
      const inside = edgeInRect(layout.edges[i], wx0, wy0, wx1, wy1);
      if (inside) { crossing.push(i); ink += inside * inkPerUnit; }
    });
    // More ink than the canvas has pixels, EDGE_INK_PER_PX times over, is a grey wash that
    // takes longer to draw than a frame has: then each task in view shows its edges as stubs
    // pointing where they go (the selected task's edges in full), or, while edges are faded,
    // none are drawn.
    const dense = ink > EDGE_INK_PER_PX * W * H || (faint && crossing.length > MAX_FAINT_EDGES);
    const edgeMode = !dense ? "all" : faint ? "none" : "stubs";
    canvas.dataset.edges = edgeMode;
    ctx.globalAlpha = faint ? 0.15 : 1;
    ctx.lineWidth = 1 / Math.min(k, 1);
    ctx.strokeStyle = "#94a3b8";
    ctx.beginPath();
    const arrows: number[] = [];
    // an arrowhead only where its tip is in view: most edges cross the view end to end
    const arrow = (ax: number, ay: number) => {
      if (k > 0.4 && ax >= wx0 && ax - 6 <= wx1 && ay + 4 >= wy0 && ay - 4 <= wy1) arrows.push(ax, ay);
    };
    const stub = STUB_PX / k;
    // a stub leaves its task toward the edge's other end, at most STUB_MAX_ANGLE off the
    // horizontal: an edge to a far row would otherwise be a tick along the task's side
    const stubFrom = (px: number, py: number, dx: number, dy: number) => {
      const len = Math.hypot(dx, dy) || 1;
      let ux = dx / len, uy = dy / len;
      if (Math.abs(uy) > STUB_SIN) { uy = Math.sign(uy) * STUB_SIN; ux = (dx < 0 ? -1 : 1) * STUB_COS; }
      const l = Math.min(stub, len);
      ctx.moveTo(px, py);
      ctx.lineTo(px + ux * l, py + uy * l);
    };
    const inView = (px: number, py: number) => px >= wx0 && px <= wx1 && py >= wy0 && py <= wy1;
    if (edgeMode !== "none") {
      for (const i of crossing) {
        const e = layout.edges[i];
        const p = e.pts, n = p.length;
        if (edgeMode === "all" || e.from === sel || e.to === sel) {
          ctx.moveTo(p[0], p[1]);
          for (let j = 2; j < n; j += 2) ctx.lineTo(p[j], p[j + 1]);
          arrow(p[n - 2], p[n - 1]);
          continue;
        }
        if (inView(p[0], p[1])) stubFrom(p[0], p[1], p[2] - p[0], p[3] - p[1]);
        if (inView(p[n - 2], p[n - 1])) {
          stubFrom(p[n - 2], p[n - 1], p[n - 4] - p[n - 2], p[n - 3] - p[n - 1]);
          arrow(p[n - 2], p[n - 1]);
        }
      }
    }
    ctx.stroke();
    ctx.fillStyle = "#94a3b8";
    ctx.beginPath();
    for (let i = 0; i < arrows.length; i += 2) {
      // no closePath: fill() closes each triangle, and closePath costs more the longer the path
      const ax = arrows[i], ay = arrows[i + 1];
      ctx.moveTo(ax, ay); ctx.lineTo(ax - 6, ay - 3.5); ctx.lineTo(ax - 6, ay + 3.5);
    }
    ctx.fill();
    ctx.globalAlpha = 1;
    // nodes, batched by colour
    const visible: GNode[] = [];
    index.nodes.visit(wx0, wy0, wx1, wy1, (i) => {
      const n = layout.nodes[i];
      if (nodeInRect(n, wx0, wy0, wx1, wy1)) visible.push(n);
    });
    const byColor = new Map<string, GNode[]>();
    for (const n of visible) {
      const c = st ? STATE_COLORS[st[n.id] ?? "waiting"] ?? DEFINITION_COLOR : DEFINITION_COLOR;
      let list = byColor.get(c);
      if (!list) byColor.set(c, (list = []));
      list.push(n);
    }
    for (const [color, list] of byColor) {
      ctx.fillStyle = color;
      ctx.beginPath();
      for (const n of list) ctx.rect(n.x, n.y, n.w, n.h);
      ctx.fill();
    }
    ctx.strokeStyle = "#475569";
    ctx.lineWidth = 1 / k;
    ctx.beginPath();
    for (const n of visible) ctx.rect(n.x, n.y, n.w, n.h);
    ctx.stroke();
    ring(ctx, k, found, "#f59e0b", 2);
    if (sel) ring(ctx, k, [sel], "#1d4ed8", 3);
    // labels once they are legible
    if (k * 12 >= 7) {
      ctx.fillStyle = "#0f172a";
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      // a task is as wide as its label (nodeWidth): maxWidth only squeezes an odd long one,
      // far cheaper than clipping each label
      for (const n of visible) ctx.fillText(n.label, n.x + 8, n.y + n.h / 2, n.w - 12);
    }
    finishFrame(canvas, visible.length);
  };

  const ring = (ctx: CanvasRenderingContext2D, k: number, ids: string[], color: string, width: number) => {
    if (!layout || !ids.length) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = width / k;
    ctx.beginPath();
    for (const id of ids) {
      const n = layout.byId.get(id);
      if (n) ctx.rect(n.x - 3 / k, n.y - 3 / k, n.w + 6 / k, n.h + 6 / k);
    }
    ctx.stroke();
  };

  /** Zoomed far out: each layer (column) one bar, split by state in proportion to its counts. */
  const drawLayers = (
    ctx: CanvasRenderingContext2D, k: number, x: number, y: number,
    wx0: number, wy0: number, wx1: number, wy1: number, st: Record<string, TaskState> | undefined, dpr: number,
  ): number => {
    const labels: [string, number, number, number][] = [];
    let represented = 0;
    for (const g of groups) {
      if (g.x1 < wx0 || g.x0 > wx1 || g.y1 < wy0 || g.y0 > wy1) continue;
      represented += g.ids.length;
      const counts = new Map<string, number>();
      for (const id of g.ids) {
        const s = st ? st[id] ?? "waiting" : "";
        counts.set(s, (counts.get(s) ?? 0) + 1);
      }
      // at least a few pixels wide on screen, so a narrow layer is still seen
      const w = Math.max(g.x1 - g.x0, 3 / k), h = g.y1 - g.y0;
      let top = g.y0;
      for (const s of st ? STATE_ORDER : [""]) {
        const c = counts.get(s);
        if (!c) continue;
        const part = (h * c) / g.ids.length;
        ctx.fillStyle = s ? STATE_COLORS[s] : DEFINITION_COLOR;
        ctx.fillRect(g.x0, top, w, part);
        if (part * k >= 14 && w * k >= 26) labels.push([String(c), g.x0 + w / 2, top + part / 2, 0]);
        top += part;
      }
      ctx.strokeStyle = "#475569";
      ctx.lineWidth = 1 / k;
      ctx.strokeRect(g.x0, g.y0, w, h);
      if (w * k >= 26) labels.push([String(g.ids.length), g.x0 + w / 2, g.y0, 1]);
    }
    // the counts, in screen pixels
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const [text, lx, ly, above] of labels) {
      ctx.fillStyle = above ? "#475569" : "#0f172a";
      ctx.textBaseline = above ? "bottom" : "middle";
      ctx.fillText(text, lx * k + x, ly * k + y - (above ? 2 : 0));
    }
    ctx.textAlign = "start";
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * x, dpr * y);
    return represented;
  };

  const finishFrame = (canvas: HTMLCanvasElement, visibleNodes: number) => {
    if (!layout) return;
    canvas.dataset.visibleNodes = String(visibleNodes);
    if (firstDraw.current) {
      firstDraw.current = false;
      performance.mark("graph-rendered");
      canvas.dataset.ready = "true";
    }
    if (final && canvas.dataset.layout !== "final") {
      performance.mark("graph-final-layout");
      canvas.dataset.layout = "final";
      canvas.dataset.layoutMs = String(layout.ms);
    }
  };
  const redraw = () => { if (!frame.current) frame.current = requestAnimationFrame(draw); };

  const fit = () => {
    const canvas = canvasRef.current;
    if (!canvas || !layout) return;
    const W = canvas.clientWidth, H = canvas.clientHeight, pad = 16;
    const k = Math.max(0.02, Math.min(1.5, (W - 2 * pad) / Math.max(layout.width, 1), (H - 2 * pad) / Math.max(layout.height, 1)));
    view.current = { k, x: (W - layout.width * k) / 2, y: (H - layout.height * k) / 2 };
    atFit.current = true;
    redraw();
  };

  /** The task of `l` nearest the centre of the canvas as the view shows it now. */
  const atCentre = (l: Layout): string | null => {
    const canvas = canvasRef.current;
    if (!canvas) return null;
    const { k, x, y } = view.current;
    const cx = (canvas.clientWidth / 2 - x) / k, cy = (canvas.clientHeight / 2 - y) / k;
    let best: string | null = null, far = Infinity;
    for (const n of l.nodes) {
      const d = (n.x + n.w / 2 - cx) ** 2 + (n.y + n.h / 2 - cy) ** 2;
      if (d < far) { far = d; best = n.id; }
    }
    return best;
  };

  const centerOn = (id: string, minScale = 1) => {
    const canvas = canvasRef.current;
    const n = layout?.byId.get(id);
    if (!canvas || !n) return;
    const k = Math.max(view.current.k, minScale);
    view.current = { k, x: canvas.clientWidth / 2 - (n.x + n.w / 2) * k, y: canvas.clientHeight / 2 - (n.y + n.h / 2) * k };
    atFit.current = false;
    redraw();
  };

  const zoom = (factor: number, cx?: number, cy?: number) => {
    const canvas = canvasRef.current;
    if (!canvas) return;
    const { k, x, y } = view.current;
    const px = cx ?? canvas.clientWidth / 2, py = cy ?? canvas.clientHeight / 2;
    const nk = Math.max(0.02, Math.min(4, k * factor));
    view.current = { k: nk, x: px - ((px - x) / k) * nk, y: py - ((py - y) / k) * nk };
    atFit.current = false;
    redraw();
  };

  // a layout effect: the view is set before the page can take input (a search, a click)
  useLayoutEffect(() => {
    if (!layout) return;
    const before = shown.current;
    shown.current = layout;
    // the final layout replaces the quick one: keep the selected task in view, else the task
    // at the centre of a view the user moved (at its zoom), else fit
    const sel = props.current.selected;
    const replaced = final && !firstDraw.current && before !== null && before !== layout;
    const centre = replaced && !atFit.current ? atCentre(before) : null;
    if (replaced && sel && layout.byId.has(sel)) centerOn(sel, view.current.k);
    else if (centre !== null && layout.byId.has(centre)) centerOn(centre, view.current.k);
    else fit();
  }, [layout]);
  useEffect(() => { redraw(); }, [states, selected, matches]);

  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas) return;
    // keep what is at the centre in the centre when the canvas changes size (a panel opens)
    let size = { w: canvas.clientWidth, h: canvas.clientHeight };
    const ro = new ResizeObserver(() => {
      const w = canvas.clientWidth, h = canvas.clientHeight;
      view.current = { ...view.current, x: view.current.x + (w - size.w) / 2, y: view.current.y + (h - size.h) / 2 };
      size = { w, h };
      redraw();
    });
    ro.observe(canvas);
    const onWheel = (ev: WheelEvent) => {
      ev.preventDefault();
      const r = canvas.getBoundingClientRect();
      zoom(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    };
    canvas.addEventListener("wheel", onWheel, { passive: false });
    let drag: { x: number; y: number; vx: number; vy: number; moved: boolean } | null = null;
    const down = (ev: PointerEvent) => {
      canvas.setPointerCapture(ev.pointerId);
      drag = { x: ev.clientX, y: ev.clientY, vx: view.current.x, vy: view.current.y, moved: false };
    };
    const move = (ev: PointerEvent) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved) {
        view.current = { ...view.current, x: drag.vx + dx, y: drag.vy + dy };
        atFit.current = false;
        redraw();
      }
    };
    const up = (ev: PointerEvent) => {
      const was = drag;
      drag = null;
      if (!was || was.moved || !layout) return;
      const r = canvas.getBoundingClientRect();
      const { k, x, y } = view.current;
      const wx = (ev.clientX - r.left - x) / k, wy = (ev.clientY - r.top - y) / k;
      if (k * NODE_H < AGGREGATE_BELOW_PX) {
        // a click on a layer's bar zooms in to its tasks, around the point clicked
        if (groups.some((g) => wx >= g.x0 && wx <= g.x1 && wy >= g.y0 && wy <= g.y1)) {
          zoom((FAINT_EDGES_BELOW_PX + 2) / NODE_H / k, ev.clientX - r.left, ev.clientY - r.top);
        }
        return;
      }
      let hit: GNode | null = null;
      spatial(layout).nodes.visit(wx, wy, wx, wy, (i) => {
        const n = layout.nodes[i];
        if (!hit && nodeInRect(n, wx, wy, wx, wy)) hit = n;
      });
      if (hit) {
        const id = (hit as GNode).id;
        props.current.selected = id;
        onSelect?.(id);
        redraw();
      }
    };
    canvas.addEventListener("pointerdown", down);
    canvas.addEventListener("pointermove", move);
    canvas.addEventListener("pointerup", up);
    return () => {
      ro.disconnect();
      canvas.removeEventListener("wheel", onWheel);
      canvas.removeEventListener("pointerdown", down);
      canvas.removeEventListener("pointermove", move);
      canvas.removeEventListener("pointerup", up);
    };
  }, [layout, groups, onSelect]);

  const summary = useMemo(() => {
    if (!ids) return "Graph, loading";
    const n = ids.length;
    if (!states) return `Graph of ${n} tasks`;
    const counts: Record<string, number> = {};
    for (const id of ids) {
      const s = states[id] ?? "waiting";
      counts[s] = (counts[s] ?? 0) + 1;
    }
    return `Graph of ${n} tasks: ` + Object.entries(counts).sort().map(([s, c]) => `${c} ${s}`).join(", ");
  }, [ids, states]);

  const search = (ev: Event) => {
    ev.preventDefault();
    const q = query.trim().toLowerCase();
    if (!q || !layout) { setMatches([]); return; }
    const exact = layout.byId.has(query.trim()) ? [query.trim()] : [];
    const found = exact.length ? exact : layout.nodes.filter((n) => n.id.toLowerCase().includes(q)).map((n) => n.id);
    setMatches(found);
    if (found.length) {
      centerOn(found[0]);
      onSelect?.(found[0]);
    }
  };

  return (
    <div class="graph">
      <form class="graph-tools" onSubmit={search} role="search">
        <input
          type="search" placeholder="Find a task" aria-label="Find a task" value={query}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
        />
        <button type="submit">Find</button>
        <span class="muted">{query && matches.length ? `${matches.length} found` : ""}</span>
        {!final && !error && (
          <span class="muted small" aria-live="polite">
            {layout ? (refine ? "quick layout; refining" : "quick layout; refined when the run ends") : "laying out"}{ids ? ` ${ids.length} tasks` : ""}…
          </span>
        )}
        <span class="spacer" />
        <button type="button" onClick={() => zoom(1.25)} aria-label="Zoom in">+</button>
        <button type="button" onClick={() => zoom(0.8)} aria-label="Zoom out">−</button>
        <button type="button" onClick={fit}>Fit</button>
      </form>
      {error && <p class="error">Layout failed: {error}</p>}

      <canvas ref={canvasRef} class="graph-canvas" style={{ height: `${height}px` }} role="img" aria-label={summary} data-testid="graph" />
      {states && (
        <div class="legend">
          {Object.entries(STATE_COLORS).map(([s, c]) => (
            <span key={s}><i style={{ background: c }} />{s.replace(/_/g, " ")}</span>
          ))}
        </div>
      )}
    </div>
  );
}
