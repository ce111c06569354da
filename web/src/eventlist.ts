// The event list's bookkeeping, kept pure for unit tests: one list, newest
// first, fed from both ends (live events on top, older pages below).

export interface HasId {
  id: number;
}

/** Both lists as one, newest first, each id once. */
export function mergeNewestFirst<T extends HasId>(a: T[], b: T[]): T[] {
  const seen = new Set<number>();
  const out: T[] = [];
  for (const e of a.concat(b)) {
    if (!seen.has(e.id)) {
      seen.add(e.id);
      out.push(e);
    }
  }
  return out.sort((x, y) => y.id - x.id);
}

/**
 * Adds what arrived live (newest first, as the page's live tail holds it)
 * on top of `list`: only ids newer than the list's newest that pass
 * `keep`. Returns `list` itself when nothing is new, so a render can be
 * skipped.
 */
export function addLive<T extends HasId>(list: T[], live: T[], keep: (e: T) => boolean): T[] {
  const top = list.length ? list[0].id : 0;
  const fresh: T[] = [];
  for (const e of live) {
    if (e.id <= top) break;
    if (keep(e)) fresh.push(e);
  }
  return fresh.length ? fresh.concat(list) : list;
}
