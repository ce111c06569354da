// All 16384 slots as a 128×128 grid on a canvas, coloured by owner.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { get, ObservedNode, OpenSlot } from '../api';
import { COLS, SLOTS, SlotOwners, colour, count, rangesByOwner, rangesText, slotAt, uncovered } from '../slots';
import { num } from '../format';

interface Props {
  cluster: string;
  owners: SlotOwners;
  nodes: ObservedNode[];
  open: OpenSlot[];
  /** A plan shown as a diff: the slots that change hands. */
  changed?: Uint8Array;
  selected: string | null;
  onSelect: (id: string | null) => void;
  label?: string;
}

interface Hover {
  slot: number;
  x: number;
  y: number;
  keys?: number | string;
}

export function SlotMap({ cluster, owners, nodes, open, changed, selected, onSelect, label }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const [cell, setCell] = useState(4);
  const [hover, setHover] = useState<Hover | null>(null);
  const addr = (id: string) => nodes.find((n) => n.id === id)?.address ?? id.slice(0, 8);
  const openKey = open.map((o) => `${o.slot}>${o.to}`).join(',');
  const openBySlot = useMemo(() => new Map(open.map((o) => [o.slot, o])), [openKey]);

  // The grid fits the width it is given (a narrow laptop screen too).
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fit = () => setCell(Math.max(2, Math.min(6, Math.floor(el.clientWidth / COLS))));
    fit();
    const ro = new ResizeObserver(fit);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    const c = canvas.current;
    if (!c) return;
    const dpr = window.devicePixelRatio || 1;
    const size = COLS * cell;
    c.width = size * dpr;
    c.height = size * dpr;
    c.style.width = `${size}px`;
    c.style.height = `${size}px`;
    const g = c.getContext('2d');
    if (!g) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const sel = selected ? owners.masters.indexOf(selected) : -1;
    const colours = owners.masters.map((_, i) => colour(i));
    // One rectangle per run of slots alike (same owner, same dimming) in
    // a row: a few hundred draws instead of 16384.
    const dim = (s: number) => (sel >= 0 && owners.owner[s] !== sel) || (changed !== undefined && !changed[s]);
    for (let row = 0; row < SLOTS / COLS; row++) {
      let start = row * COLS;
      for (let s = start + 1; s <= (row + 1) * COLS; s++) {
        const end = s === (row + 1) * COLS;
        if (end || owners.owner[s] !== owners.owner[start] || dim(s) !== dim(start)) {
          const i = owners.owner[start];
          g.globalAlpha = dim(start) ? 0.18 : 1;
          g.fillStyle = i >= 0 ? colours[i] : colour(-1);
          g.fillRect((start % COLS) * cell, row * cell, (s - start) * cell, cell);
          start = s;
        }
      }
    }
    g.globalAlpha = 1;
    // Slots in migration: a dark frame, and an arrow-like stripe toward
    // the side of the target's colour.
    for (const o of open) {
      const x = (o.slot % COLS) * cell;
      const y = Math.floor(o.slot / COLS) * cell;
      g.fillStyle = '#111';
      g.fillRect(x, y, cell, cell);
      const t = owners.masters.indexOf(o.to);
      g.fillStyle = colour(t);
      g.fillRect(x + cell / 2, y, cell / 2, cell);
    }
  }, [owners, openKey, changed, selected, cell]);

  // The key count of the slot under the pointer, asked once it rests.
  useEffect(() => {
    if (!hover || hover.keys !== undefined) return;
    const slot = hover.slot;
    const t = setTimeout(() => {
      get<{ keys: number | null }>(`/clusters/${encodeURIComponent(cluster)}/slots/${slot}`)
        .then((r) => setHover((h) => (h && h.slot === slot ? { ...h, keys: r.keys ?? '–' } : h)))
        .catch(() => setHover((h) => (h && h.slot === slot ? { ...h, keys: 'unknown' } : h)));
    }, 150);
    return () => clearTimeout(t);
  }, [hover?.slot]);

  const by = rangesByOwner(owners);
  const free = uncovered(owners);
  const onMove = (e: MouseEvent) => {
    const r = (e.target as HTMLCanvasElement).getBoundingClientRect();
    const s = slotAt(e.clientX - r.left, e.clientY - r.top, cell);
    if (s === null) setHover(null);
    else if (!hover || hover.slot !== s) setHover({ slot: s, x: e.clientX - r.left, y: e.clientY - r.top });
  };
  const h = hover;
  const hOwner = h ? owners.owner[h.slot] : -1;
  const hOpen = h ? openBySlot.get(h.slot) : undefined;
  return (
    <section class="slotmap" aria-labelledby="slotmap-title">
      <h2 id="slotmap-title">{label ?? 'Slot map'}</h2>
      <div class="map-and-legend">
        <div class="map" ref={box}>
          <canvas
            ref={canvas}
            role="img"
            aria-label={`Hash slots by owner: ${owners.masters
              .map((m) => `${addr(m)} ${count(by.get(m) ?? [])}`)
              .join(', ')}${free.length ? `, ${count(free)} unassigned` : ''}${open.length ? `, ${open.length} in migration` : ''}`}
            data-testid="slot-canvas"
            onMouseMove={onMove}
            onMouseLeave={() => setHover(null)}
          />
          {h && (
            <div class="tip" style={{ left: `${h.x + 12}px`, top: `${h.y + 12}px` }} role="tooltip" data-testid="slot-tip">
              <b>slot {h.slot}</b>
              <br />
              {hOwner >= 0 ? addr(owners.masters[hOwner]) : 'unassigned'}
              <br />
              keys: {h.keys === undefined ? '…' : typeof h.keys === 'number' ? num(h.keys) : h.keys}
              {hOpen && (
                <>
                  <br />
                  moving {addr(hOpen.from)} → {addr(hOpen.to)}
                </>
              )}
            </div>
          )}
        </div>
        <ul class="legend" aria-label="Masters">
          {owners.masters.map((m, i) => {
            const n = count(by.get(m) ?? []);
            return (
              <li>
                <button
                  type="button"
                  class={selected === m ? 'owner selected' : 'owner'}
                  aria-pressed={selected === m}
                  onClick={() => onSelect(selected === m ? null : m)}
                  title="Highlight this master's slots"
                >
                  <span class="swatch" style={{ background: colour(i) }} aria-hidden="true" />
                  {addr(m)} <span class="muted">{num(n)} slots</span>
                </button>
              </li>
            );
          })}
          {free.length > 0 && (
            <li class="warn">
              <span class="swatch" style={{ background: colour(-1) }} aria-hidden="true" /> unassigned: {num(count(free))}
            </li>
          )}
          {open.length > 0 && (
            <li>
              <span class="swatch" style={{ background: '#111' }} aria-hidden="true" /> in migration: {open.length}
            </li>
          )}
        </ul>
      </div>
      <details class="ranges">
        <summary>Slot ranges per master (text)</summary>
        <ul data-testid="slot-ranges">
          {owners.masters.map((m) => (
            <li>
              <b>{addr(m)}</b> ({num(count(by.get(m) ?? []))}): {rangesText(by.get(m) ?? []) || 'none'}
            </li>
          ))}
          {free.length > 0 && (
            <li>
              <b>unassigned</b> ({num(count(free))}): {rangesText(free)}
            </li>
          )}
          {open.map((o) => (
            <li>
              slot {o.slot}: {addr(o.from)} → {addr(o.to)}
            </li>
          ))}
        </ul>
      </details>
    </section>
  );
}
