// Slot arithmetic for the slot map and plans: pure, no DOM, unit-tested.

export const SLOTS = 16384;

/** An inclusive range of slots, as the API sends it: [first, last]. */
export type Range = [number, number];

export interface NodeLike {
  id: string;
  role: string;
  slots: Range[];
}

export interface Move {
  from: string;
  to: string;
  slots: Range[];
}

/** Owner index per slot (-1: unassigned), and the masters indexed. */
export interface SlotOwners {
  owner: Int16Array;
  masters: string[];
}

export function owners(nodes: NodeLike[]): SlotOwners {
  const owner = new Int16Array(SLOTS).fill(-1);
  const masters = nodes
    .filter((n) => n.role === 'master')
    .map((n) => n.id)
    .sort();
  for (const n of nodes) {
    const i = masters.indexOf(n.id);
    if (i < 0) continue;
    for (const [a, b] of n.slots) {
      for (let s = Math.max(0, a); s <= Math.min(SLOTS - 1, b); s++) owner[s] = i;
    }
  }
  return { owner, masters };
}

/** Number of slots in some ranges. */
export function count(ranges: Range[]): number {
  return ranges.reduce((n, [a, b]) => n + (b - a + 1), 0);
}

/** Slots as sorted, merged ranges. */
export function toRanges(slots: Iterable<number>): Range[] {
  const sorted = [...new Set(slots)].sort((x, y) => x - y);
  const out: Range[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && last[1] + 1 === s) last[1] = s;
    else out.push([s, s]);
  }
  return out;
}

/** "0-5460,5462" */
export function rangesText(ranges: Range[]): string {
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(', ');
}

/**
 * Parses what a person types for slot ranges: "0-99, 200, 300-310".
 * Returns merged ranges, or an error naming the bad part.
 */
export function parseRanges(text: string): Range[] | { error: string } {
  const slots: Range[] = [];
  for (const raw of text.split(/[,\s]+/)) {
    const part = raw.trim();
    if (!part) continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return { error: `'${part}' is not a slot or a range like 10-20` };
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a >= SLOTS || b >= SLOTS) return { error: `'${part}': slots go from 0 to ${SLOTS - 1}` };
    if (b < a) return { error: `'${part}': the range ends before it starts` };
    slots.push([a, b]);
  }
  if (slots.length === 0) return { error: 'no slots given' };
  const all: number[] = [];
  for (const [a, b] of slots) for (let s = a; s <= b; s++) all.push(s);
  return toRanges(all);
}

/** Ranges owned by each master, for the text alternative of the map. */
export function rangesByOwner(o: SlotOwners): Map<string, Range[]> {
  const out = new Map<string, Range[]>(o.masters.map((m) => [m, []]));
  let start = 0;
  for (let s = 1; s <= SLOTS; s++) {
    if (s === SLOTS || o.owner[s] !== o.owner[start]) {
      const i = o.owner[start];
      if (i >= 0) out.get(o.masters[i])!.push([start, s - 1]);
      start = s;
    }
  }
  return out;
}

/** Slots no master serves. */
export function uncovered(o: SlotOwners): Range[] {
  const free: number[] = [];
  o.owner.forEach((i, s) => {
    if (i < 0) free.push(s);
  });
  return toRanges(free);
}

/**
 * The owners after a plan's moves, and which slots change hands, so the
 * map can show the plan as a diff before it is confirmed. Moves naming a
 * node that is not a master (yet) add it to the list.
 */
export function applyMoves(o: SlotOwners, moves: Move[]): { after: SlotOwners; changed: Uint8Array } {
  const masters = [...o.masters];
  const owner = Int16Array.from(o.owner);
  const changed = new Uint8Array(SLOTS);
  for (const m of moves) {
    let i = masters.indexOf(m.to);
    if (i < 0) {
      masters.push(m.to);
      i = masters.length - 1;
    }
    for (const [a, b] of m.slots) {
      for (let s = a; s <= b; s++) {
        if (owner[s] !== i) changed[s] = 1;
        owner[s] = i;
      }
    }
  }
  return { after: { owner, masters }, changed };
}

/** Per move, "from → to: n slots". */
export function movesSummary(moves: Move[], name: (id: string) => string): string[] {
  const byPair = new Map<string, number>();
  for (const m of moves) {
    const k = `${name(m.from)} → ${name(m.to)}`;
    byPair.set(k, (byPair.get(k) ?? 0) + count(m.slots));
  }
  return [...byPair].map(([k, n]) => `${k}: ${n} slot${n === 1 ? '' : 's'}`);
}

/** A distinct colour per master index, readable on white. */
export function colour(i: number): string {
  if (i < 0) return '#d9d9d9';
  // Golden-angle hues spread any number of masters apart.
  const hue = (i * 137.508 + 200) % 360;
  return `hsl(${hue.toFixed(0)} 62% ${i % 2 ? 42 : 52}%)`;
}

/** Grid position of a slot: 128 columns by 128 rows. */
export const COLS = 128;
export function slotAt(x: number, y: number, cell: number): number | null {
  const c = Math.floor(x / cell);
  const r = Math.floor(y / cell);
  if (c < 0 || c >= COLS || r < 0 || r >= SLOTS / COLS) return null;
  return r * COLS + c;
}
