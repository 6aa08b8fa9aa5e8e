import type { ComponentChild } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

interface VirtualListProps<T> {
  items: readonly T[];
  /** Fixed row height in pixels (must match the CSS). */
  rowHeight: number;
  itemKey: (item: T) => string;
  renderRow: (item: T, index: number, active: boolean) => ComponentChild;
  /** Accessible name of the list. */
  label: string;
  onOpen: (item: T) => void;
  /** Rows rendered above and below the viewport. */
  overscan?: number;
}

const FALLBACK_VIEWPORT = 600;

/** Which rows to render for a scroll position: [start, end). */
export function visibleRange(
  count: number,
  scrollTop: number,
  viewport: number,
  rowHeight: number,
  overscan: number,
): [number, number] {
  const first = Math.floor(scrollTop / rowHeight);
  const start = Math.max(0, first - overscan);
  const end = Math.min(count, first + Math.ceil(viewport / rowHeight) + overscan);
  return [start, Math.max(start, end)];
}

/**
 * A keyboard-navigable list that renders only the rows in view. Arrow keys, Page Up/Down,
 * Home and End move the active row; Enter opens it.
 */
export function VirtualList<T>(props: VirtualListProps<T>) {
  const { items, rowHeight, itemKey, renderRow, label, onOpen, overscan = 6 } = props;
  const viewportRef = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(FALLBACK_VIEWPORT);
  const [active, setActive] = useState(0);

  useLayoutEffect(() => {
    const el = viewportRef.current;
    if (!el) return;
    const measure = () => setViewport(el.clientHeight || FALLBACK_VIEWPORT);
    measure();
    if (typeof ResizeObserver === "undefined") {
      window.addEventListener("resize", measure);
      return () => window.removeEventListener("resize", measure);
    }
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  // Arriving on the list with focus nowhere in particular puts it on the list, so the arrow
  // keys work at once.
  useEffect(() => {
    const current = document.activeElement;
    if (current === null || current === document.body || current.id === "main") viewportRef.current?.focus();
  }, []);

  // Keep the active row inside the list when the list shrinks.
  useEffect(() => {
    if (active >= items.length) setActive(Math.max(0, items.length - 1));
  }, [items.length, active]);

  const [start, end] = visibleRange(items.length, scrollTop, viewport, rowHeight, overscan);

  const reveal = (index: number) => {
    const el = viewportRef.current;
    if (!el) return;
    const top = index * rowHeight;
    if (top < el.scrollTop) el.scrollTop = top;
    else if (top + rowHeight > el.scrollTop + viewport) el.scrollTop = top + rowHeight - viewport;
    setScrollTop(el.scrollTop);
  };

  const moveTo = (index: number) => {
    const next = Math.max(0, Math.min(items.length - 1, index));
    setActive(next);
    reveal(next);
  };

  const onKeyDown = (e: KeyboardEvent) => {
    const page = Math.max(1, Math.floor(viewport / rowHeight) - 1);
    switch (e.key) {
      case "ArrowDown":
      case "j":
        moveTo(active + 1);
        break;
      case "ArrowUp":
      case "k":
        moveTo(active - 1);
        break;
      case "PageDown":
        moveTo(active + page);
        break;
      case "PageUp":
        moveTo(active - page);
        break;
      case "Home":
        moveTo(0);
        break;
      case "End":
        moveTo(items.length - 1);
        break;
      case "Enter": {
        const item = items[active];
        if (item !== undefined) onOpen(item);
        break;
      }
      default:
        return;
    }
    e.preventDefault();
  };

  const rows: ComponentChild[] = [];
  for (let i = start; i < end; i++) {
    const item = items[i];
    if (item === undefined) continue;
    const key = itemKey(item);
    rows.push(
      <div
        key={key}
        id={`row-${key}`}
        role="option"
        aria-selected={i === active}
        aria-posinset={i + 1}
        aria-setsize={items.length}
        class={i === active ? "vrow vrow-active" : "vrow"}
        style={{ transform: `translateY(${i * rowHeight}px)`, height: `${rowHeight}px` }}
        onClick={() => {
          setActive(i);
          onOpen(item);
        }}
      >
        {renderRow(item, i, i === active)}
      </div>,
    );
  }
  const activeItem = items[active];

  return (
    <div
      ref={viewportRef}
      class="vlist"
      role="listbox"
      tabIndex={0}
      aria-label={label}
      aria-activedescendant={activeItem === undefined ? undefined : `row-${itemKey(activeItem)}`}
      onKeyDown={onKeyDown}
      onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
    >
      <div class="vlist-canvas" style={{ height: `${items.length * rowHeight}px` }}>
        {rows}
      </div>
    </div>
  );
}
