import { describe, expect, it } from 'vitest';
import {
  applyMoves,
  count,
  movesSummary,
  owners,
  parseRanges,
  rangesByOwner,
  rangesText,
  slotAt,
  toRanges,
  uncovered,
} from './slots';

const three = [
  { id: 'b', role: 'master', slots: [[5461, 10922]] as [number, number][] },
  { id: 'a', role: 'master', slots: [[0, 5460]] as [number, number][] },
  { id: 'c', role: 'master', slots: [[10923, 16383]] as [number, number][] },
  { id: 'r', role: 'replica', slots: [] },
];

describe('owners', () => {
  it('indexes masters by id and fills their slots', () => {
    const o = owners(three);
    expect(o.masters).toEqual(['a', 'b', 'c']);
    expect(o.owner[0]).toBe(0);
    expect(o.owner[5461]).toBe(1);
    expect(o.owner[16383]).toBe(2);
    expect(uncovered(o)).toEqual([]);
  });
  it('leaves unassigned slots at -1 and reports them', () => {
    const o = owners([{ id: 'a', role: 'master', slots: [[0, 99], [200, 16383]] }]);
    expect(o.owner[150]).toBe(-1);
    expect(uncovered(o)).toEqual([[100, 199]]);
  });
});

describe('ranges', () => {
  it('merges and sorts', () => {
    expect(toRanges([5, 3, 4, 10, 11, 1])).toEqual([[1, 1], [3, 5], [10, 11]]);
    expect(count([[0, 9], [20, 20]])).toBe(11);
    expect(rangesText([[0, 9], [20, 20]])).toBe('0-9, 20');
  });
  it('parses what a person types', () => {
    expect(parseRanges('0-99, 200 300-310')).toEqual([[0, 99], [200, 200], [300, 310]]);
    expect(parseRanges('5,4,3')).toEqual([[3, 5]]);
    expect(parseRanges('10-5')).toHaveProperty('error');
    expect(parseRanges('16384')).toHaveProperty('error');
    expect(parseRanges('a-b')).toHaveProperty('error');
    expect(parseRanges(' ')).toHaveProperty('error');
  });
  it('lists each owner\'s ranges for the text alternative', () => {
    const o = owners([
      { id: 'a', role: 'master', slots: [[0, 10], [20, 16383]] },
      { id: 'b', role: 'master', slots: [[11, 19]] },
    ]);
    const by = rangesByOwner(o);
    expect(by.get('a')).toEqual([[0, 10], [20, 16383]]);
    expect(by.get('b')).toEqual([[11, 19]]);
  });
});

describe('plans', () => {
  it('shows which slots change hands, new targets included', () => {
    const o = owners(three);
    const { after, changed } = applyMoves(o, [
      { from: 'a', to: 'd', slots: [[0, 9]] },
      { from: 'b', to: 'a', slots: [[5461, 5461]] },
      { from: 'c', to: 'c', slots: [[16383, 16383]] },
    ]);
    expect(after.masters).toEqual(['a', 'b', 'c', 'd']);
    expect(after.owner[0]).toBe(3);
    expect(after.owner[5461]).toBe(0);
    expect(changed.reduce((n, x) => n + x, 0)).toBe(11);
    expect(changed[16383]).toBe(0);
    // The input is left as it was.
    expect(o.owner[0]).toBe(0);
  });
  it('sums moves per pair', () => {
    const s = movesSummary(
      [
        { from: 'a', to: 'd', slots: [[0, 9]] },
        { from: 'a', to: 'd', slots: [[20, 20]] },
        { from: 'b', to: 'd', slots: [[30, 30]] },
      ],
      (id) => id.toUpperCase(),
    );
    expect(s).toEqual(['A → D: 11 slots', 'B → D: 1 slot']);
  });
});

describe('grid', () => {
  it('maps a point to a slot', () => {
    expect(slotAt(0, 0, 4)).toBe(0);
    expect(slotAt(4 * 127 + 1, 0, 4)).toBe(127);
    expect(slotAt(0, 4, 4)).toBe(128);
    expect(slotAt(4 * 128, 0, 4)).toBeNull();
    expect(slotAt(0, 4 * 128, 4)).toBeNull();
  });
});
