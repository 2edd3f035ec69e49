// A scrolling list that renders only the rows in view, so 2,000 tasks cost what 30 do.
// Its rows are one tab stop (a roving tabindex): Tab enters the list at the row last focused
// and leaves it at once; ArrowUp/ArrowDown, Home and End move between rows, scrolling the row
// reached into view; the row's own handler opens it (Enter).
import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

interface Props<T> {
  items: T[];
  rowHeight: number;
  height: number;
  header?: ComponentChildren;
  /** ``tabIndex`` goes on the row's focusable element: 0 for the list's tab stop, else -1 */
  row: (item: T, index: number, tabIndex: 0 | -1) => ComponentChildren;
  label: string;
}

export function VirtualList<T>({ items, rowHeight, height, header, row, label }: Props<T>) {
  const ref = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [active, setActive] = useState(0);
  const moved = useRef(false); // the keyboard moved to `active`: focus it once rendered
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const onScroll = () => setTop(el.scrollTop);
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => el.removeEventListener("scroll", onScroll);
  }, []);
  const current = Math.max(0, Math.min(active, items.length - 1)); // the list may have shrunk
  useLayoutEffect(() => {
    if (!moved.current) return;
    moved.current = false;
    const el = ref.current?.querySelector<HTMLElement>(`[data-row="${current}"] [tabindex]`);
    el?.focus({ preventScroll: true });
    el?.scrollIntoView({ block: "nearest" });
  }, [current]);
  const onKeyDown = (e: KeyboardEvent) => {
    const at = (e.target as HTMLElement).closest<HTMLElement>("[data-row]");
    if (!at || e.altKey || e.ctrlKey || e.metaKey) return;
    const to = { ArrowDown: current + 1, ArrowUp: current - 1, Home: 0, End: items.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault(); // the list scrolls to the row, not by itself
    const next = Math.max(0, Math.min(to, items.length - 1));
    if (next === current) return;
    moved.current = true;
    setActive(next);
  };
  // a row focused by a click (or by the keys above) becomes the list's tab stop
  const onFocusIn = (e: FocusEvent) => {
    const at = (e.target as HTMLElement).closest<HTMLElement>("[data-row]");
    if (at) setActive(Number(at.dataset.row));
  };
  const first = Math.max(0, Math.floor(top / rowHeight) - 5);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 5);
  const shown = [];
  // the tab stop is rendered even when scrolled out of view, so the list keeps it
  if (current < first && current < items.length) shown.push(current);
  for (let i = first; i < last; i++) shown.push(i);
  if (current >= last && current < items.length) shown.push(current);
  return (
    <div class="vlist" style={{ maxHeight: `${height}px` }} ref={ref} role="list" aria-label={label} onKeyDown={onKeyDown} onFocusIn={onFocusIn}>
      {header}
      <div style={{ height: `${items.length * rowHeight}px`, position: "relative" }}>
        {shown.map((i) => (
          <div class="vrow" style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }} key={i} data-row={i}>
            {row(items[i], i, i === current ? 0 : -1)}
          </div>
        ))}
      </div>
    </div>
  );
}
