// A scrolling list that renders only the rows in view, so 2,000 tasks cost what 30 do.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

interface Props<T> {
  items: T[];
  rowHeight: number;
  height: number;
  header?: ComponentChildren;
  row: (item: T, index: number) => ComponentChildren;
  label: string;
}

export function VirtualList<T>({ items, rowHeight, height, header, row, label }: Props<T>) {
  const ref = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const onScroll = () => setTop(el.scrollTop);
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => el.removeEventListener("scroll", onScroll);
  }, []);
  const first = Math.max(0, Math.floor(top / rowHeight) - 5);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 5);
  const rows = [];
  for (let i = first; i < last; i++) {
    rows.push(
      <div class="vrow" style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }} key={i}>
        {row(items[i], i)}
      </div>,
    );
  }
  return (
    <div class="vlist" style={{ maxHeight: `${height}px` }} ref={ref} role="list" aria-label={label}>
      {header}
      <div style={{ height: `${items.length * rowHeight}px`, position: "relative" }}>{rows}</div>
    </div>
  );
}
