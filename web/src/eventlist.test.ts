import { describe, expect, it } from 'vitest';
import { addLive, mergeNewestFirst } from './eventlist';

const ev = (...ids: number[]) => ids.map((id) => ({ id, kind: id % 2 ? 'odd' : 'even' }));

describe('event list', () => {
  it('merges pages and live events without duplicates, newest first', () => {
    expect(mergeNewestFirst(ev(9, 8, 7), ev(8, 7, 6, 5)).map((e) => e.id)).toEqual([9, 8, 7, 6, 5]);
    expect(mergeNewestFirst(ev(), ev(3, 1)).map((e) => e.id)).toEqual([3, 1]);
  });
  it('adds only newer live events that pass the filter, and keeps every one of a long burst', () => {
    const list = ev(10, 9, 8);
    const live = ev(...Array.from({ length: 600 }, (_, i) => 610 - i), 10, 9);
    const out = addLive(list, live, () => true);
    expect(out.length).toBe(603);
    expect(out[0].id).toBe(610);
    expect(out.slice(-3).map((e) => e.id)).toEqual([10, 9, 8]);
    const odd = addLive(list, ev(14, 13, 12, 11, 10), (e) => e.kind === 'odd');
    expect(odd.map((e) => e.id)).toEqual([13, 11, 10, 9, 8]);
  });
  it('returns the same list when nothing is new', () => {
    const list = ev(5, 4);
    expect(addLive(list, ev(5, 4, 3), () => true)).toBe(list);
  });
});
