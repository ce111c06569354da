//! The partial quicksort Redis uses when a reply needs only part of a
//! sorted array (GEOSEARCH and GEORADIUS with COUNT): Bentley and
//! McIlroy's three-way quicksort, recursing only into parts that overlap
//! the wanted positions.
//!
//! It is not stable, so which of several equal elements comes first is
//! decided by the exact sequence of swaps. Replies with ties (two points
//! at the same distance) equal redis-server's only if that sequence is
//! the same: this follows its steps (median of three, of nine above 40
//! elements, insertion sort below 7, equal elements gathered at both ends
//! and swapped into the middle).

use std::cmp::Ordering;

/// Sorts `v` by `cmp` far enough that positions `lo..=hi` hold what a
/// full sort would put there, in the order redis-server's pqsort leaves.
pub fn pqsort<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering, lo: usize, hi: usize) {
    if v.len() > 1 {
        sort_part(v, &cmp, 0, v.len(), lo, hi);
    }
}

/// The median of three positions, picked with the comparisons pqsort
/// makes.
fn med3<T>(v: &[T], cmp: &impl Fn(&T, &T) -> Ordering, a: usize, b: usize, c: usize) -> usize {
    if cmp(&v[a], &v[b]).is_lt() {
        if cmp(&v[b], &v[c]).is_lt() {
            b
        } else if cmp(&v[a], &v[c]).is_lt() {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]).is_gt() {
        b
    } else if cmp(&v[a], &v[c]).is_lt() {
        a
    } else {
        c
    }
}

/// Swaps the `n` elements from `i` with the `n` from `j`, pairwise.
fn swap_runs<T>(v: &mut [T], i: usize, j: usize, n: usize) {
    for k in 0..n {
        v.swap(i + k, j + k);
    }
}

/// Whether the part `[first, first + n)` holds any of the wanted positions
/// (pqsort's test: not both ends before it, not both after it).
fn wanted(first: usize, n: usize, lo: usize, hi: usize) -> bool {
    let last = first + n - 1;
    !((lo < first && hi < first) || (lo > last && hi > last))
}

fn sort_part<T>(
    v: &mut [T],
    cmp: &impl Fn(&T, &T) -> Ordering,
    mut a: usize,
    mut n: usize,
    lo: usize,
    hi: usize,
) {
    loop {
        if n < 7 {
            for m in a + 1..a + n {
                let mut l = m;
                while l > a && cmp(&v[l - 1], &v[l]).is_gt() {
                    v.swap(l, l - 1);
                    l -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, cmp, pl, pl + d, pl + 2 * d);
                pm = med3(v, cmp, pm - d, pm, pm + d);
                pn = med3(v, cmp, pn - 2 * d, pn - d, pn);
            }
            pm = med3(v, cmp, pl, pm, pn);
        }
        v.swap(a, pm);
        // The pivot sits at `a`. Equal elements gather at the start
        // (`a+1..pa`) and at the end (`pd+1..`); `pb` and `pc` close in.
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c.is_gt() {
                    break;
                }
                if c.is_eq() {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c.is_lt() {
                    break;
                }
                if c.is_eq() {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let end = a + n;
        let r = (pa - a).min(pb - pa);
        swap_runs(v, a, pb - r, r);
        let r = (pd - pc).min(end - pd - 1);
        swap_runs(v, pb, end - r, r);
        let left = pb - pa;
        if left > 1 && wanted(a, left, lo, hi) {
            sort_part(v, cmp, a, left, lo, hi);
        }
        let right = pd - pc;
        if right <= 1 {
            return;
        }
        a = end - right;
        n = right;
        if !wanted(a, n, lo, hi) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The wanted positions hold what a full sort puts there, and
        /// the whole is a permutation of the input.
        #[test]
        fn wanted_positions_are_sorted(
            keys in proptest::collection::vec(0u8..20, 1..300),
            a in 0usize..300,
            b in 0usize..300,
        ) {
            let n = keys.len();
            let (lo, hi) = (a.min(b) % n, a.max(b) % n);
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let mut v: Vec<(u8, usize)> = keys.iter().copied().zip(0..).collect();
            pqsort(&mut v, |x, y| x.0.cmp(&y.0), lo, hi);
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            for i in lo..=hi {
                prop_assert_eq!(v[i].0, sorted[i]);
            }
            let mut tags: Vec<usize> = v.iter().map(|x| x.1).collect();
            tags.sort_unstable();
            prop_assert_eq!(tags, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn ties_come_out_in_redis_servers_order() {
        // Ten equal keys and one smaller, first 3 wanted. The order of the
        // tags is what redis-server's pqsort.c gives for this input.
        let mut v: Vec<(u8, usize)> = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1]
            .iter()
            .copied()
            .zip(0..)
            .collect();
        pqsort(&mut v, |x, y| x.0.cmp(&y.0), 0, 2);
        let tags: Vec<usize> = v.iter().map(|x| x.1).collect();
        assert_eq!(tags, EXPECTED_TIES);
    }

    const EXPECTED_TIES: [usize; 11] = [10, 1, 2, 3, 4, 0, 6, 7, 8, 9, 5];
}
