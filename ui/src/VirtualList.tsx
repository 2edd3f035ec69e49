// A scrolling list that renders only the rows in view, so 2,000 tasks cost what 30 do.
// It is a listbox (the ARIA pattern) whose rows are its options: each says its place in the
// whole list (aria-posinset of aria-setsize, rows not rendered counted too) and whether it is
// the item open (aria-selected). Its rows are one tab stop (a roving tabindex): Tab enters the
// list at the row last focused and leaves it at once; ArrowUp/ArrowDown, PageUp/PageDown (a
// page: the rows the view shows), Home and End move between rows, scrolling the row reached
// into view; a click, Enter or Space opens it.
// The tab stop is an item (its key), not a row number: when a poll changes the list (a task
// leaves a filtered list, one is added) the focus stays on its item, and an item that leaves
// hands the tab stop, and the focus if it had it, to the row taking its place.
import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

interface Props<T> {
  items: T[];
  /** what identifies an item across renders (a task's id) */
  keyOf: (item: T) => string;
  rowHeight: number;
  height: number;
  /** above the rows, scrolled with them (not one of the options) */
  header?: ComponentChildren;
  /** a row's content; an option's content is what it is announced as (its accessible name) */
  row: (item: T, index: number) => ComponentChildren;
  /** a row clicked, or Enter or Space on it */
  onOpen: (item: T) => void;
  /** the key of the item open, if any: its option is the selected one */
  selected?: string | null;
  label: string;
}

export function VirtualList<T>({ items, keyOf, rowHeight, height, header, row, onOpen, selected, label }: Props<T>) {
  const ref = useRef<HTMLDivElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [activeKey, setActiveKey] = useState<string | null>(null);
  const at = useRef(0); // the tab stop's row number when last rendered: where a leaving item's successor is
  const moved = useRef(false); // the keyboard moved the tab stop: focus it once rendered
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const onScroll = () => setTop(el.scrollTop);
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => el.removeEventListener("scroll", onScroll);
  }, []);
  const keys = items.map(keyOf);
  const found = activeKey === null ? -1 : keys.indexOf(activeKey);
  const current = found >= 0 ? found : Math.max(0, Math.min(at.current, items.length - 1));
  at.current = current;
  // whether this list holds the focus as this render begins: a row it removes takes it along
  const focused = !!ref.current && ref.current.contains(document.activeElement);
  const focusRow = () => box.current?.querySelector<HTMLElement>(`[data-row="${current}"]`) ?? null;
  useLayoutEffect(() => {
    if (moved.current) {
      moved.current = false;
      const el = focusRow();
      el?.focus({ preventScroll: true });
      el?.scrollIntoView({ block: "nearest" });
    } else if (focused && ref.current && !ref.current.contains(document.activeElement)) {
      focusRow()?.focus({ preventScroll: true }); // its row left the list (or was moved): the one in its place
    }
    // the item in the leaving one's place is the tab stop now, wherever the list goes next
    if (found < 0 && items.length > 0 && activeKey !== null) setActiveKey(keys[current]);
  });
  // a page: the rows wholly in view, below the header (the listbox starts under it)
  const perPage = () => Math.max(1, Math.floor(((ref.current?.clientHeight ?? height) - (box.current?.offsetTop ?? 0)) / rowHeight));
  const onKeyDown = (e: KeyboardEvent) => {
    const from = (e.target as HTMLElement).closest<HTMLElement>("[data-row]");
    if (!from || e.altKey || e.ctrlKey || e.metaKey || items.length === 0) return;
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onOpen(items[current]);
      return;
    }
    const to = {
      ArrowDown: current + 1, ArrowUp: current - 1, PageDown: current + perPage(), PageUp: current - perPage(),
      Home: 0, End: items.length - 1,
    }[e.key];
    if (to === undefined) return;
    e.preventDefault(); // the list scrolls to the row, not by itself
    const next = Math.max(0, Math.min(to, items.length - 1));
    if (next === current) return;
    moved.current = true;
    setActiveKey(keys[next]);
  };
  // a row focused by a click (or by the keys above) becomes the list's tab stop
  const onFocusIn = (e: FocusEvent) => {
    const from = (e.target as HTMLElement).closest<HTMLElement>("[data-row]");
    if (from) setActiveKey(keys[Number(from.dataset.row)] ?? null);
  };
  const first = Math.max(0, Math.floor(top / rowHeight) - 5);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 5);
  const shown = [];
  // the tab stop is rendered even when scrolled out of view, so the list keeps it
  if (current < first && current < items.length) shown.push(current);
  for (let i = first; i < last; i++) shown.push(i);
  if (current >= last && current < items.length) shown.push(current);
  return (
    <div class="vlist" style={{ maxHeight: `${height}px` }} ref={ref}>
      {header}
      <div role="listbox" aria-label={label} ref={box} style={{ height: `${items.length * rowHeight}px`, position: "relative" }}
        onKeyDown={onKeyDown} onFocusIn={onFocusIn}>
        {shown.map((i) => (
          <div class="vrow" role="option" tabIndex={i === current ? 0 : -1} aria-selected={keys[i] === selected}
            aria-setsize={items.length} aria-posinset={i + 1} style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }}
            key={keys[i]} data-row={i} onClick={() => onOpen(items[i])}>
            {row(items[i], i)}
          </div>
        ))}
      </div>
    </div>
  );
}
