//! Planning: which node is a master, who replicates whom, which slots go
//! where. Pure functions over plain values, tested by properties.

use serde::{Deserialize, Serialize};

use crate::topology::SLOTS;

/// What `create` will do, shown before it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePlan {
    pub shards: Vec<Shard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub master: String,
    pub replicas: Vec<String>,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// Splits 16384 slots into `n` contiguous ranges as `redis-cli --cluster
/// create` does (0-5460, 5461-10922, 10923-16383 for three).
pub fn split_slots(n: usize) -> Vec<(u16, u16)> {
    let per = SLOTS as f64 / n as f64;
    let mut out = Vec::with_capacity(n);
    let (mut first, mut cursor) = (0i64, 0f64);
    for i in 0..n {
        let mut last = (cursor + per - 1.0).round() as i64;
        if last > SLOTS as i64 - 1 || i == n - 1 {
            last = SLOTS as i64 - 1;
        }
        if last < first {
            last = first;
        }
        out.push((first as u16, last as u16));
        first = last + 1;
        cursor += per;
    }
    out
}

/// Orders nodes so that consecutive ones are on different hosts where
/// possible: one from each host in turn, hosts in order of first sight.
fn interleave(nodes: &[String]) -> Vec<String> {
    let mut hosts: Vec<(&str, Vec<&String>)> = Vec::new();
    for n in nodes {
        match hosts.iter_mut().find(|(h, _)| *h == host(n)) {
            Some((_, v)) => v.push(n),
            None => hosts.push((host(n), vec![n])),
        }
    }
    let mut out = Vec::with_capacity(nodes.len());
    let mut round = 0;
    while out.len() < nodes.len() {
        for (_, v) in &hosts {
            if let Some(n) = v.get(round) {
                out.push((*n).clone());
            }
        }
        round += 1;
    }
    out
}

fn uses(s: &Shard, h: &str) -> bool {
    host(&s.master) == h || s.replicas.iter().any(|r| host(r) == h)
}

/// For each shard, a distinct node of `rest` on a host the shard does not
/// use, as many as can be matched (Kuhn's augmenting paths).
fn match_round(shards: &[Shard], rest: &[String]) -> Vec<Option<usize>> {
    fn augment(
        si: usize,
        shards: &[Shard],
        rest: &[String],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for ni in 0..rest.len() {
            if seen[ni] || uses(&shards[si], host(&rest[ni])) {
                continue;
            }
            seen[ni] = true;
            if owner[ni].is_none_or(|o| augment(o, shards, rest, seen, owner)) {
                owner[ni] = Some(si);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; rest.len()];
    for si in 0..shards.len() {
        let mut seen = vec![false; rest.len()];
        augment(si, shards, rest, &mut seen, &mut owner);
    }
    let mut pick = vec![None; shards.len()];
    for (ni, o) in owner.iter().enumerate() {
        if let Some(si) = o {
            pick[*si] = Some(ni);
        }
    }
    pick
}

/// The layout of a new cluster: `nodes.len() / (replicas + 1)` masters
/// (at least three), the slots split evenly between them, and each master
/// given `replicas` replicas, on hosts its shard does not use yet when
/// there is one. Nodes left over become extra replicas of the masters
/// with the fewest.
pub fn create(nodes: &[String], replicas: usize) -> Result<CreatePlan, PlanError> {
    let mut seen = std::collections::HashSet::new();
    for n in nodes {
        if !seen.insert(n.as_str()) {
            return Err(PlanError::Invalid(format!("address {n} is listed twice")));
        }
    }
    let masters = nodes.len() / (replicas + 1);
    if masters < 3 {
        return Err(PlanError::Invalid(format!(
            "{} nodes with {replicas} replicas per master make {masters} masters; a cluster needs at least 3",
            nodes.len()
        )));
    }
    let order = interleave(nodes);
    let mut shards: Vec<Shard> = order[..masters]
        .iter()
        .zip(split_slots(masters))
        .map(|(m, r)| Shard {
            master: m.clone(),
            replicas: Vec::new(),
            slots: vec![r],
        })
        .collect();
    let mut rest: Vec<String> = order[masters..].to_vec();
    // Each round gives every shard one replica: a matching of shards to
    // nodes on hosts the shard does not use yet (augmenting paths), so a
    // greedy early pick cannot strand a later shard on its own host.
    for _ in 0..replicas {
        if rest.is_empty() {
            break;
        }
        let pick = match_round(&shards, &rest);
        let mut taken: Vec<usize> = Vec::new();
        for (si, ni) in pick.iter().enumerate() {
            let ni = match ni {
                Some(ni) => *ni,
                // No node on a new host: any free one.
                None => match (0..rest.len())
                    .find(|i| !taken.contains(i) && !pick.contains(&Some(*i)))
                {
                    Some(i) => i,
                    None => continue,
                },
            };
            taken.push(ni);
            shards[si].replicas.push(rest[ni].clone());
        }
        taken.sort_unstable();
        for i in taken.into_iter().rev() {
            rest.remove(i);
        }
    }
    while !rest.is_empty() {
        let Some(s) = shards.iter_mut().min_by_key(|s| s.replicas.len()) else {
            break;
        };
        let i = rest.iter().position(|n| !uses(s, host(n))).unwrap_or(0);
        s.replicas.push(rest.remove(i));
    }
    Ok(CreatePlan { shards })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addrs(hosts: usize, per_host: usize) -> Vec<String> {
        (0..per_host)
            .flat_map(|p| (0..hosts).map(move |h| format!("10.0.0.{h}:{}", 7000 + p)))
            .collect()
    }

    #[test]
    fn three_masters_split_like_redis_cli() {
        assert_eq!(
            split_slots(3),
            vec![(0, 5460), (5461, 10922), (10923, 16383)]
        );
    }

    #[test]
    fn six_local_nodes_make_three_shards_of_two() {
        let nodes: Vec<String> = (1..=6)
            .map(|p| format!("127.0.0.1:{}", 30000 + p))
            .collect();
        let p = create(&nodes, 1).unwrap();
        assert_eq!(p.shards.len(), 3);
        assert_eq!(p.shards[0].master, "127.0.0.1:30001");
        assert_eq!(p.shards[0].replicas, vec!["127.0.0.1:30004".to_string()]);
    }

    #[test]
    fn refuses_too_few_nodes_and_duplicates() {
        let nodes: Vec<String> = (1..=5).map(|p| format!("127.0.0.1:{p}")).collect();
        assert!(create(&nodes, 1).is_err());
        let mut dup = nodes.clone();
        dup.push(dup[0].clone());
        assert!(create(&dup, 0).is_err());
    }

    proptest! {
        #[test]
        fn every_slot_has_one_owner(n in 1usize..200) {
            let r = split_slots(n);
            prop_assert_eq!(r[0].0, 0);
            prop_assert_eq!(r[r.len() - 1].1, SLOTS - 1);
            for w in r.windows(2) {
                prop_assert_eq!(w[0].1 + 1, w[1].0);
            }
        }

        #[test]
        fn shards_avoid_sharing_a_host(hosts in 2usize..6, per_host in 1usize..6, replicas in 0usize..3) {
            let nodes = addrs(hosts, per_host);
            let Ok(p) = create(&nodes, replicas) else {
                prop_assert!(nodes.len() / (replicas + 1) < 3);
                return Ok(());
            };
            // Every node placed once.
            let placed: usize = p.shards.iter().map(|s| 1 + s.replicas.len()).sum();
            prop_assert_eq!(placed, nodes.len());
            for s in &p.shards {
                prop_assert!(s.replicas.len() >= replicas);
                // With enough hosts, no shard has two members on one.
                if hosts > replicas && s.replicas.len() == replicas {
                    let mut hs: Vec<&str> = s.replicas.iter().map(|r| host(r)).collect();
                    hs.push(host(&s.master));
                    let n = hs.len();
                    hs.sort();
                    hs.dedup();
                    prop_assert_eq!(hs.len(), n, "shard {:?}", s);
                }
            }
        }
    }
}

/// One source's share of a reshard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub from: String,
    pub to: String,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Move {
    pub fn count(&self) -> u32 {
        self.slots.iter().map(|&(a, b)| (b - a) as u32 + 1).sum()
    }
}

/// What a reshard asks for: either a number of slots (taken from the
/// sources in proportion to what each holds) or given ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Count(u32),
    Ranges(Vec<(u16, u16)>),
}

/// The moves of a reshard to `to`, over the masters' current slots
/// (`owners`: id → owned slots, sorted). `from` empty means every master
/// but the target.
pub fn reshard(
    owners: &[(String, Vec<u16>)],
    to: &str,
    from: &[String],
    want: &Want,
) -> Result<Vec<Move>, PlanError> {
    let invalid = |m: String| Err(PlanError::Invalid(m));
    if !owners.iter().any(|(id, _)| id == to) {
        return invalid(format!("target {to} is not a master of this cluster"));
    }
    for f in from {
        if f == to {
            return invalid("the target cannot also be a source".into());
        }
        if !owners.iter().any(|(id, _)| id == f) {
            return invalid(format!("source {f} is not a master of this cluster"));
        }
    }
    let sources: Vec<&(String, Vec<u16>)> = owners
        .iter()
        .filter(|(id, _)| id != to && (from.is_empty() || from.contains(id)))
        .collect();
    let mut moves = Vec::new();
    match want {
        Want::Count(n) => {
            let total: u64 = sources.iter().map(|(_, s)| s.len() as u64).sum();
            if *n == 0 {
                return invalid("slots must be at least 1".into());
            }
            if *n as u64 > total {
                return invalid(format!(
                    "the sources hold {total} slots; {n} cannot be moved"
                ));
            }
            // Shares in proportion to holdings, the remainder to the
            // largest fractions (so the shares add up to n exactly).
            let mut shares: Vec<(usize, u64, u64)> = sources
                .iter()
                .enumerate()
                .map(|(i, (_, s))| {
                    let exact = *n as u64 * s.len() as u64;
                    (i, exact / total, exact % total)
                })
                .collect();
            let mut left = *n as u64 - shares.iter().map(|s| s.1).sum::<u64>();
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(shares[i].2));
            for i in order {
                if left == 0 {
                    break;
                }
                if shares[i].1 < sources[i].1.len() as u64 {
                    shares[i].1 += 1;
                    left -= 1;
                }
            }
            for (i, share, _) in shares {
                if share == 0 {
                    continue;
                }
                let (id, slots) = sources[i];
                moves.push(Move {
                    from: id.clone(),
                    to: to.to_string(),
                    slots: crate::topology::ranges_of(slots.iter().copied().take(share as usize)),
                });
            }
        }
        Want::Ranges(ranges) => {
            let mut per: Vec<(String, Vec<u16>)> = Vec::new();
            for &(a, b) in ranges {
                if a > b || b >= SLOTS {
                    return invalid(format!("bad slot range {a}-{b}"));
                }
                for s in a..=b {
                    let Some((owner, _)) =
                        owners.iter().find(|(_, sl)| sl.binary_search(&s).is_ok())
                    else {
                        return invalid(format!("slot {s} has no owner"));
                    };
                    if owner == to {
                        return invalid(format!("slot {s} already belongs to the target"));
                    }
                    if !from.is_empty() && !from.contains(owner) {
                        return invalid(format!(
                            "slot {s} belongs to {owner}, which is not a source"
                        ));
                    }
                    match per.iter_mut().find(|(id, _)| id == owner) {
                        Some((_, v)) => v.push(s),
                        None => per.push((owner.clone(), vec![s])),
                    }
                }
            }
            for (id, mut slots) in per {
                slots.sort_unstable();
                slots.dedup();
                moves.push(Move {
                    from: id,
                    to: to.to_string(),
                    slots: crate::topology::ranges_of(slots),
                });
            }
        }
    }
    Ok(moves)
}

#[cfg(test)]
mod reshard_tests {
    use super::*;
    use proptest::prelude::*;

    fn three() -> Vec<(String, Vec<u16>)> {
        split_slots(3)
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| (format!("m{i}"), (a..=b).collect()))
            .collect()
    }

    #[test]
    fn a_count_comes_from_every_source_in_proportion() {
        let m = reshard(&three(), "m1", &[], &Want::Count(1000)).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.iter().map(Move::count).sum::<u32>(), 1000);
        assert_eq!(m[0].slots, vec![(0, 499)]);
        let only = reshard(&three(), "m1", &["m2".into()], &Want::Count(10)).unwrap();
        assert_eq!(
            only,
            vec![Move {
                from: "m2".into(),
                to: "m1".into(),
                slots: vec![(10923, 10932)]
            }]
        );
    }

    #[test]
    fn ranges_are_grouped_by_owner() {
        let m = reshard(
            &three(),
            "m0",
            &[],
            &Want::Ranges(vec![(5460, 5461), (16383, 16383)]),
        );
        assert!(m.is_err(), "5460 is the target's");
        let m = reshard(
            &three(),
            "m0",
            &[],
            &Want::Ranges(vec![(5461, 5470), (16383, 16383)]),
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].slots, vec![(5461, 5470)]);
    }

    #[test]
    fn impossible_requests_are_refused() {
        assert!(reshard(&three(), "nope", &[], &Want::Count(1)).is_err());
        assert!(reshard(&three(), "m0", &["m0".into()], &Want::Count(1)).is_err());
        assert!(reshard(&three(), "m0", &[], &Want::Count(11000)).is_err());
        assert!(reshard(&three(), "m0", &[], &Want::Count(0)).is_err());
        assert!(reshard(&three(), "m0", &[], &Want::Ranges(vec![(5, 2)])).is_err());
    }

    proptest! {
        #[test]
        fn moves_add_up_and_belong_to_their_sources(n in 1u32..10922, to in 0usize..3) {
            let owners = three();
            let target = format!("m{to}");
            let m = reshard(&owners, &target, &[], &Want::Count(n)).unwrap();
            prop_assert_eq!(m.iter().map(Move::count).sum::<u32>(), n);
            for mv in &m {
                prop_assert!(mv.from != target);
                let own = &owners.iter().find(|(id, _)| *id == mv.from).unwrap().1;
                for &(a, b) in &mv.slots {
                    for s in a..=b {
                        prop_assert!(own.binary_search(&s).is_ok());
                    }
                }
            }
        }
    }
}

/// Moves that empty the master `node`, its slots spread over the other
/// masters of `owners` so their counts end as even as they can (the
/// emptiest filled first), each given one contiguous run of the slots.
pub fn drain(owners: &[(String, Vec<u16>)], node: &str) -> Result<Vec<Move>, PlanError> {
    let Some((_, slots)) = owners.iter().find(|(id, _)| id == node) else {
        return Err(PlanError::Invalid(format!(
            "{node} is not a master of this cluster"
        )));
    };
    let others: Vec<&(String, Vec<u16>)> = owners.iter().filter(|(id, _)| id != node).collect();
    if others.is_empty() {
        return Err(PlanError::Invalid(format!(
            "{node} is the last master: its slots have nowhere to go"
        )));
    }
    let mut counts: Vec<usize> = others.iter().map(|(_, s)| s.len()).collect();
    let mut quota = vec![0usize; others.len()];
    for _ in 0..slots.len() {
        let i = (0..counts.len())
            .min_by_key(|&i| (counts[i], i))
            .unwrap_or(0);
        counts[i] += 1;
        quota[i] += 1;
    }
    let mut moves = Vec::new();
    let mut rest = slots.as_slice();
    for (i, (id, _)) in others.iter().enumerate() {
        if quota[i] == 0 {
            continue;
        }
        let (take, left) = rest.split_at(quota[i]);
        rest = left;
        moves.push(Move {
            from: node.to_string(),
            to: id.clone(),
            slots: crate::topology::ranges_of(take.iter().copied()),
        });
    }
    Ok(moves)
}

#[cfg(test)]
mod drain_tests {
    use super::*;

    #[test]
    fn a_drained_master_spreads_evenly() {
        let owners = vec![
            ("a".to_string(), (0..100).collect::<Vec<u16>>()),
            ("b".to_string(), (100..150).collect()),
            ("c".to_string(), vec![]),
        ];
        let m = drain(&owners, "a").unwrap();
        // b ends with 75, c with 75.
        assert_eq!(m.iter().map(Move::count).sum::<u32>(), 100);
        let to_c = m.iter().find(|x| x.to == "c").unwrap().count();
        assert_eq!(to_c, 75);
        assert!(drain(&owners[..1], "a").is_err());
        assert!(drain(&owners, "z").is_err());
    }
}

/// Rebalancing, as `redis-cli --cluster rebalance` decides it: each
/// master's share of 16384 slots follows its weight (default 1; 0 empties
/// it); masters without slots take part only when `use_empty` (or when
/// given a weight). Nothing moves when every master is within
/// `threshold` percent of its share. Senders give to receivers, the most
/// out of balance first.
pub fn rebalance(
    owners: &[(String, Vec<u16>)],
    weights: &std::collections::BTreeMap<String, f64>,
    use_empty: bool,
    threshold: f64,
) -> Result<Vec<Move>, PlanError> {
    for (id, w) in weights {
        if !owners.iter().any(|(o, _)| o == id) {
            return Err(PlanError::Invalid(format!(
                "{id} is not a master of this cluster"
            )));
        }
        if !(w.is_finite() && *w >= 0.0) {
            return Err(PlanError::Invalid(format!(
                "the weight of {id} must be a number ≥ 0"
            )));
        }
    }
    let nodes: Vec<(&String, &Vec<u16>, f64)> = owners
        .iter()
        .filter(|(id, s)| !s.is_empty() || use_empty || weights.contains_key(id))
        .map(|(id, s)| (id, s, weights.get(id).copied().unwrap_or(1.0)))
        .collect();
    let total_w: f64 = nodes.iter().map(|n| n.2).sum();
    if total_w <= 0.0 {
        return Err(PlanError::Invalid(
            "the weights add up to 0: the slots would have nowhere to go".into(),
        ));
    }
    let mut expected: Vec<i64> = nodes
        .iter()
        .map(|n| (SLOTS as f64 * n.2 / total_w).floor() as i64)
        .collect();
    // The rounding remainder goes to the weighted nodes, one each, those
    // holding the most beyond their share first: fewer slots move.
    let mut left = SLOTS as i64 - expected.iter().sum::<i64>();
    let mut by_surplus: Vec<usize> = (0..nodes.len()).collect();
    by_surplus.sort_by_key(|&i| std::cmp::Reverse(nodes[i].1.len() as i64 - expected[i]));
    for i in by_surplus {
        let n = &nodes[i];
        if left == 0 {
            break;
        }
        if n.2 > 0.0 {
            expected[i] += 1;
            left -= 1;
        }
    }
    let mut balance: Vec<i64> = nodes
        .iter()
        .zip(&expected)
        .map(|(n, e)| n.1.len() as i64 - e)
        .collect();
    let over = nodes
        .iter()
        .zip(&expected)
        .zip(&balance)
        .any(|((n, e), b)| {
            (n.2 == 0.0 && !n.1.is_empty()) || (*b).abs() as f64 > (*e as f64) * threshold / 100.0
        });
    if !over {
        return Ok(Vec::new());
    }
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| balance[i]);
    let mut taken: Vec<usize> = vec![0; nodes.len()];
    let mut moves: Vec<Move> = Vec::new();
    let (mut lo, mut hi) = (0usize, order.len().saturating_sub(1));
    while lo < hi {
        let (dst, src) = (order[lo], order[hi]);
        if balance[dst] >= 0 || balance[src] <= 0 {
            break;
        }
        let n = (-balance[dst]).min(balance[src]) as usize;
        let slots = &nodes[src].1[taken[src]..taken[src] + n];
        taken[src] += n;
        moves.push(Move {
            from: nodes[src].0.clone(),
            to: nodes[dst].0.clone(),
            slots: crate::topology::ranges_of(slots.iter().copied()),
        });
        balance[dst] += n as i64;
        balance[src] -= n as i64;
        if balance[dst] == 0 {
            lo += 1;
        }
        if balance[src] == 0 {
            hi -= 1;
        }
    }
    Ok(moves)
}

#[cfg(test)]
mod rebalance_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn owners(counts: &[usize]) -> Vec<(String, Vec<u16>)> {
        let mut next = 0u16;
        counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let s: Vec<u16> = (next..next + c as u16).collect();
                next += c as u16;
                (format!("m{i}"), s)
            })
            .collect()
    }

    fn after(o: &[(String, Vec<u16>)], moves: &[Move]) -> Vec<i64> {
        o.iter()
            .map(|(id, s)| {
                s.len() as i64
                    + moves
                        .iter()
                        .filter(|m| &m.to == id)
                        .map(|m| m.count() as i64)
                        .sum::<i64>()
                    - moves
                        .iter()
                        .filter(|m| &m.from == id)
                        .map(|m| m.count() as i64)
                        .sum::<i64>()
            })
            .collect()
    }

    #[test]
    fn an_empty_master_gets_its_share_only_when_asked() {
        let o = owners(&[8192, 8192, 0]);
        assert!(rebalance(&o, &BTreeMap::new(), false, 2.0)
            .unwrap()
            .is_empty());
        let m = rebalance(&o, &BTreeMap::new(), true, 2.0).unwrap();
        assert_eq!(after(&o, &m), vec![5462, 5461, 5461]);
    }

    #[test]
    fn weights_set_the_shares_and_zero_empties() {
        let o = owners(&[5461, 5461, 5462]);
        let w: BTreeMap<String, f64> = [("m0".to_string(), 2.0), ("m2".to_string(), 0.0)].into();
        let m = rebalance(&o, &w, false, 2.0).unwrap();
        assert_eq!(after(&o, &m), vec![10922, 5462, 0]);
        let bad: BTreeMap<String, f64> = [("zz".to_string(), 1.0)].into();
        assert!(rebalance(&o, &bad, false, 2.0).is_err());
        let none: BTreeMap<String, f64> = [
            ("m0".to_string(), 0.0),
            ("m1".to_string(), 0.0),
            ("m2".to_string(), 0.0),
        ]
        .into();
        assert!(rebalance(&o, &none, false, 2.0).is_err());
    }

    proptest! {
        #[test]
        fn every_master_ends_at_its_share(a in 0usize..8000, b in 0usize..8000) {
            let c = 16384 - a - b;
            let o = owners(&[a, b, c]);
            let m = rebalance(&o, &BTreeMap::new(), true, 0.0).unwrap();
            let got = after(&o, &m);
            prop_assert_eq!(got.iter().sum::<i64>(), 16384);
            for g in got {
                prop_assert!((5461..=5462).contains(&g), "{:?}", m);
            }
        }
    }
}
