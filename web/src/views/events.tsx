// The event history: newest first, filtered by kind, node and time,
// older pages loaded on scroll, new events arriving live.

import { Component } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Data } from '../app';
import { EventRow, get } from '../api';
import { time, shortId } from '../format';
import { addLive, mergeNewestFirst } from '../eventlist';

const PAGE = 100;

function matches(e: EventRow, kind: string, node: string, until: number | null) {
  return (!kind || e.kind === kind) && (!node || e.node === node) && (until === null || e.time <= until);
}

function details(e: EventRow): string {
  const d = e.details;
  if (!d || typeof d !== 'object') return '';
  return Object.entries(d)
    .filter(([, v]) => v !== null && v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k}: ${v}`)
    .join(' · ');
}

interface ItemProps {
  e: EventRow;
  nodeAddr: string;
  onNode: (id: string) => void;
}

/**
 * One event. Rows never change once shown, so a burst of new events
 * renders only the new rows (the list can hold hundreds).
 */
class EventItem extends Component<ItemProps> {
  shouldComponentUpdate(next: ItemProps) {
    return next.e !== this.props.e || next.nodeAddr !== this.props.nodeAddr;
  }
  render({ e, nodeAddr, onNode }: ItemProps) {
    return (
      <li class={`event kind-${e.kind}`} data-kind={e.kind} data-id={e.id}>
        <time dateTime={new Date(e.time).toISOString()}>{time(e.time)}</time> <b class="kind">{e.kind}</b>
        {e.node && (
          <>
            {' '}
            <button type="button" class="link node" title={`Show only ${e.node}'s events`} onClick={() => onNode(e.node ?? '')}>
              {nodeAddr}
            </button>
          </>
        )}
        {e.job && (
          <>
            {' '}
            <a href={`#/jobs/${e.job}`}>{e.job}</a>
          </>
        )}
        {e.actor && <span class="muted"> by {e.actor}</span>}
        <div class="muted small">{details(e)}</div>
      </li>
    );
  }
}

/** Rows drawn at first and added per scroll to the bottom. */
const WINDOW = 200;

export function Events({ data }: { data: Data }) {
  const [kind, setKind] = useState('');
  // What is typed in the Kind box, applied on change (Enter or leaving
  // the box). It has its own state: a controlled input bound to `kind`
  // alone was reset by any render before the change event (live events
  // render often), so typed text vanished and the filter never applied.
  const [kindText, setKindText] = useState('');
  const [node, setNode] = useState('');
  const [untilText, setUntilText] = useState('');
  // Filters start the history over. The list belongs to the filters it
  // was loaded under (its key): a page or a live batch meant for other
  // filters never lands in it, whatever order the updates run in, and a
  // render with new filters never shows (or pages on from) the old rows.
  const key = `${data.cluster}|${kind}|${node}|${untilText}`;
  const [list, setList] = useState<{ key: string; rows: EventRow[]; done: boolean }>({ key: '', rows: [], done: false });
  // Every event loaded while the page is open (history pages and live),
  // newest first; only the first `shown` are drawn.
  const all = list.key === key ? list.rows : [];
  const done = list.key === key && list.done;
  const [shown, setShown] = useState(WINDOW);
  const [loading, setLoading] = useState(false);
  const sentinel = useRef<HTMLDivElement>(null);
  const until = untilText ? new Date(untilText).getTime() : null;
  const keep = (e: EventRow) => matches(e, kind, node, until);
  const q = () => {
    const p = new URLSearchParams();
    if (kind) p.set('kind', kind);
    if (node) p.set('node', node);
    if (until !== null && Number.isFinite(until)) p.set('until', String(until));
    p.set('limit', String(PAGE));
    return p;
  };
  const current = useRef('');
  const page = async (before: number) => {
    if (current.current !== key) return;
    setLoading(true);
    try {
      const p = q();
      p.set('before', String(before));
      const r = await get<{ events: EventRow[]; next: number | null }>(`/clusters/${encodeURIComponent(data.cluster)}/events?${p}`);
      setList((l) => (l.key === key ? { key, rows: mergeNewestFirst(l.rows, r.events), done: l.done || r.next === null } : l));
    } finally {
      if (current.current === key) setLoading(false);
    }
  };
  useEffect(() => {
    current.current = key;
    setList({ key, rows: [], done: false });
    setShown(WINDOW);
    setLoading(false);
    void page(Number.MAX_SAFE_INTEGER);
  }, [key]);
  // Live events on top, each one kept: every batch as it arrives (the
  // app's tail is bounded, and under a burst this view may not render each
  // of its states), applied to the list of the filters current then.
  const filters = useRef({ key, keep, until });
  filters.current = { key, keep, until };
  useEffect(
    () =>
      data.subscribe((batch) => {
        const f = filters.current;
        if (f.until !== null) return;
        setList((l) => {
          const rows = l.key === f.key ? addLive(l.rows, batch, f.keep) : l.rows;
          return rows === l.rows ? l : { ...l, rows };
        });
      }),
    [data.subscribe],
  );
  const more = () => {
    if (loading) return;
    if (shown < all.length) setShown((n) => n + WINDOW);
    else if (!done && all.length) {
      setShown((n) => n + WINDOW);
      void page(all[all.length - 1].id);
    }
  };
  useEffect(() => {
    const el = sentinel.current;
    if (!el) return;
    const io = new IntersectionObserver((es) => {
      if (es.some((e) => e.isIntersecting)) more();
    });
    io.observe(el);
    return () => io.disconnect();
  });
  const rows = all.slice(0, shown);
  const kinds = [...new Set(data.live.concat(rows).map((e) => e.kind))].sort();
  const nodes = data.topology?.nodes ?? [];
  const addr = (id: string | null) => (id ? nodes.find((n) => n.id === id)?.address ?? shortId(id) : '');
  return (
    <section aria-labelledby="events-title">
      <h2 id="events-title">
        Events <span class="muted small">{data.streaming ? '● live' : '○ reconnecting…'}</span>
      </h2>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter events">
        <label>
          Kind
          <input
            list="event-kinds"
            value={kindText}
            onInput={(e) => setKindText((e.target as HTMLInputElement).value)}
            onChange={(e) => setKind((e.target as HTMLInputElement).value.trim())}
            placeholder="any"
          />
          <datalist id="event-kinds">
            {kinds.map((k) => (
              <option value={k} />
            ))}
          </datalist>
        </label>
        <label>
          Node
          <select value={node} onChange={(e) => setNode((e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {nodes.map((n) => (
              <option value={n.id}>{n.address}</option>
            ))}
          </select>
        </label>
        <label>
          Until
          <input type="datetime-local" step={1} value={untilText} onChange={(e) => setUntilText((e.target as HTMLInputElement).value)} />
        </label>
      </form>
      {/* Keyed by the filters: new filters get a new list element, so no
          row drawn under the old ones can outlive them in the DOM. */}
      <ol class="events" data-testid="events" key={key}>
        {rows.map((e) => (
          <EventItem key={e.id} e={e} nodeAddr={addr(e.node)} onNode={setNode} />
        ))}
      </ol>
      <div ref={sentinel} class="muted small">
        {done && shown >= all.length ? 'The beginning of the history.' : loading ? 'Loading older events…' : ' '}
      </div>
    </section>
  );
}
