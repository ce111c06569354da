//! Cursor iteration over one hash table that may resize between calls.
//!
//! Items are grouped by the low bits of their hash into 2^k virtual
//! buckets, visited in reverse-binary order, as Redis walks its dict: an
//! item present for the whole iteration is returned at least once even if
//! k grows or shrinks between calls. k is chosen so a call returns about
//! `count` items, but a table is never walked in more than 64 calls, so
//! the total work stays linear in its size.

const MAX_BITS: u32 = 6;

fn bits_for(len: usize, count: usize) -> u32 {
    let per_call = count.max(len >> MAX_BITS).max(1);
    let buckets = len.div_ceil(per_call).max(1);
    buckets.next_power_of_two().trailing_zeros().min(MAX_BITS)
}

/// Next cursor value after `v` for `mask` (0 when the walk is over).
fn advance(v: u64, mask: u64) -> u64 {
    let v = (v | !mask).reverse_bits().wrapping_add(1).reverse_bits();
    v & ((1u64 << MAX_BITS) - 1)
}

/// One call's worth of `items` (each with its hash), starting at cursor
/// `v` (0 = start). Returns the items and the next cursor (0 = done).
pub fn step<T>(
    items: impl Iterator<Item = (u64, T)>,
    len: usize,
    v: u64,
    count: usize,
) -> (Vec<T>, u64) {
    let k = bits_for(len, count);
    let mask = (1u64 << k) - 1;
    let mut groups: Vec<Vec<T>> = (0..=mask).map(|_| Vec::new()).collect();
    for (h, t) in items {
        groups[(h & mask) as usize].push(t);
    }
    let mut out = Vec::new();
    let mut v = v & ((1u64 << MAX_BITS) - 1);
    loop {
        out.append(&mut groups[(v & mask) as usize]);
        v = advance(v, mask);
        if v == 0 || out.len() >= count {
            return (out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn small_tables_come_back_whole() {
        let (items, next) = step((0..5u64).map(|i| (h(i), i)), 5, 0, 10);
        assert_eq!(items.len(), 5);
        assert_eq!(next, 0);
    }

    #[test]
    fn every_item_present_throughout_is_returned_even_when_the_table_changes() {
        // Items 0..1000 stay; the table grows to 5000 then shrinks midway.
        let mut seen = HashSet::new();
        let mut v = 0;
        let mut calls = 0;
        loop {
            let len = match calls {
                0..=3 => 1000,
                4..=8 => 5000,
                _ => 300,
            };
            let (items, next) = step((0..len as u64).map(|i| (h(i), i)), len, v, 10);
            seen.extend(items.into_iter().filter(|&i| i < 300));
            calls += 1;
            v = next;
            if v == 0 {
                break;
            }
            assert!(calls < 1000);
        }
        assert_eq!(seen.len(), 300);
        assert!(calls <= 64 * 3, "{calls} calls");
    }
}
