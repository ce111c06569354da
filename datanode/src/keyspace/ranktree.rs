//! An order-statistics tree for sorted sets: an AVL tree kept in a vector
//! (indices instead of pointers), each node knowing its subtree size, so
//! insert, remove, rank and select are all O(log n).
//!
//! Elements are ordered by score, then by member bytes, as Redis orders a
//! sorted set.

use std::cmp::Ordering;

use super::sbytes::SBytes;

const NIL: u32 = u32::MAX;

struct Node {
    score: f64,
    member: SBytes,
    left: u32,
    right: u32,
    height: u8,
    size: u32,
}

impl Node {
    fn leaf(score: f64, member: SBytes) -> Node {
        Node {
            score,
            member,
            left: NIL,
            right: NIL,
            height: 1,
            size: 1,
        }
    }
}

pub struct RankTree {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    len: usize,
}

/// Total order on (score, member); scores are never NaN.
pub fn cmp_entry(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    s1.partial_cmp(&s2)
        .unwrap_or(Ordering::Equal)
        .then_with(|| m1.cmp(m2))
}

impl Default for RankTree {
    // Not derived: an empty tree's root is NIL, not 0.
    fn default() -> Self {
        Self::new()
    }
}

impl RankTree {
    pub fn new() -> Self {
        RankTree {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn size(&self, n: u32) -> u32 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size
        }
    }

    fn height(&self, n: u32) -> u8 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].height
        }
    }

    fn update(&mut self, n: u32) {
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let h = self.height(l).max(self.height(r)) + 1;
        let s = self.size(l) + self.size(r) + 1;
        let node = &mut self.nodes[n as usize];
        node.height = h;
        node.size = s;
    }

    fn rotate_right(&mut self, n: u32) -> u32 {
        let l = self.nodes[n as usize].left;
        self.nodes[n as usize].left = self.nodes[l as usize].right;
        self.nodes[l as usize].right = n;
        self.update(n);
        self.update(l);
        l
    }

    fn rotate_left(&mut self, n: u32) -> u32 {
        let r = self.nodes[n as usize].right;
        self.nodes[n as usize].right = self.nodes[r as usize].left;
        self.nodes[r as usize].left = n;
        self.update(n);
        self.update(r);
        r
    }

    fn balance(&mut self, n: u32) -> u32 {
        self.update(n);
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let bf = self.height(l) as i32 - self.height(r) as i32;
        if bf > 1 {
            let ll = self.nodes[l as usize].left;
            let lr = self.nodes[l as usize].right;
            if self.height(lr) > self.height(ll) {
                let nl = self.rotate_left(l);
                self.nodes[n as usize].left = nl;
            }
            return self.rotate_right(n);
        }
        if bf < -1 {
            let rl = self.nodes[r as usize].left;
            let rr = self.nodes[r as usize].right;
            if self.height(rl) > self.height(rr) {
                let nr = self.rotate_right(r);
                self.nodes[n as usize].right = nr;
            }
            return self.rotate_left(n);
        }
        n
    }

    fn alloc(&mut self, score: f64, member: SBytes) -> u32 {
        let node = Node::leaf(score, member);
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// A tree holding `items`, which must be sorted by [`cmp_entry`] and
    /// distinct: built balanced in O(n), without a rotation (loading a
    /// large sorted set from an RDB file).
    pub fn from_sorted(items: Vec<(f64, SBytes)>) -> Self {
        let len = items.len();
        let mut t = RankTree {
            nodes: items
                .into_iter()
                .map(|(score, member)| Node::leaf(score, member))
                .collect(),
            free: Vec::new(),
            root: NIL,
            len,
        };
        t.root = t.link(0, len);
        t
    }

    /// Links nodes `lo..hi` (in order) into a balanced subtree; returns its
    /// root. The recursion is as deep as the tree: about log2(n).
    fn link(&mut self, lo: usize, hi: usize) -> u32 {
        if lo >= hi {
            return NIL;
        }
        let mid = lo + (hi - lo) / 2;
        let l = self.link(lo, mid);
        let r = self.link(mid + 1, hi);
        let n = &mut self.nodes[mid];
        n.left = l;
        n.right = r;
        self.update(mid as u32);
        mid as u32
    }

    /// Inserts an element that is not present.
    pub fn insert(&mut self, score: f64, member: &[u8]) {
        let root = self.root;
        self.root = self.insert_at(root, score, member);
        self.len += 1;
    }

    fn insert_at(&mut self, n: u32, score: f64, member: &[u8]) -> u32 {
        if n == NIL {
            return self.alloc(score, SBytes::new(member));
        }
        let node = &self.nodes[n as usize];
        if cmp_entry(score, member, node.score, &node.member) == Ordering::Less {
            let l = self.insert_at(node.left, score, member);
            self.nodes[n as usize].left = l;
        } else {
            let r = self.insert_at(node.right, score, member);
            self.nodes[n as usize].right = r;
        }
        self.balance(n)
    }

    /// Removes an element; false when absent.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        let mut found = false;
        let root = self.root;
        self.root = self.remove_at(root, score, member, &mut found);
        if found {
            self.len -= 1;
        }
        found
    }

    fn remove_at(&mut self, n: u32, score: f64, member: &[u8], found: &mut bool) -> u32 {
        if n == NIL {
            return NIL;
        }
        let node = &self.nodes[n as usize];
        match cmp_entry(score, member, node.score, &node.member) {
            Ordering::Less => {
                let l = self.remove_at(node.left, score, member, found);
                self.nodes[n as usize].left = l;
            }
            Ordering::Greater => {
                let r = self.remove_at(node.right, score, member, found);
                self.nodes[n as usize].right = r;
            }
            Ordering::Equal => {
                *found = true;
                let (l, r) = (node.left, node.right);
                if l == NIL || r == NIL {
                    self.free.push(n);
                    self.nodes[n as usize].member = SBytes::new(b"");
                    return if l == NIL { r } else { l };
                }
                // Two children: take the successor's place.
                let (nr, succ) = self.take_min(r);
                self.nodes[succ as usize].left = l;
                self.nodes[succ as usize].right = nr;
                self.free.push(n);
                self.nodes[n as usize].member = SBytes::new(b"");
                return self.balance(succ);
            }
        }
        self.balance(n)
    }

    /// Detaches the smallest node of subtree `n`: (new subtree, that node).
    fn take_min(&mut self, n: u32) -> (u32, u32) {
        let l = self.nodes[n as usize].left;
        if l == NIL {
            return (self.nodes[n as usize].right, n);
        }
        let (nl, min) = self.take_min(l);
        self.nodes[n as usize].left = nl;
        (self.balance(n), min)
    }

    /// 0-based rank of an element, if present.
    pub fn rank(&self, score: f64, member: &[u8]) -> Option<usize> {
        let mut n = self.root;
        let mut before = 0usize;
        while n != NIL {
            let node = &self.nodes[n as usize];
            match cmp_entry(score, member, node.score, &node.member) {
                Ordering::Less => n = node.left,
                Ordering::Greater => {
                    before += self.size(node.left) as usize + 1;
                    n = node.right;
                }
                Ordering::Equal => return Some(before + self.size(node.left) as usize),
            }
        }
        None
    }

    /// The element at 0-based rank `k`.
    pub fn select(&self, mut k: usize) -> Option<(f64, &[u8])> {
        let mut n = self.root;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let ls = self.size(node.left) as usize;
            match k.cmp(&ls) {
                Ordering::Less => n = node.left,
                Ordering::Equal => return Some((node.score, &node.member)),
                Ordering::Greater => {
                    k -= ls + 1;
                    n = node.right;
                }
            }
        }
        None
    }

    /// Number of elements that sort before the first element satisfying
    /// `goes_right` (a predicate monotone in the order: false … then true).
    pub fn count_before(&self, goes_right: impl Fn(f64, &[u8]) -> bool) -> usize {
        let mut n = self.root;
        let mut count = 0usize;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if goes_right(node.score, &node.member) {
                n = node.left;
            } else {
                count += self.size(node.left) as usize + 1;
                n = node.right;
            }
        }
        count
    }

    /// Elements from rank `from` on, in order.
    pub fn iter_from(&self, from: usize) -> Walk<'_> {
        self.walk(from, false)
    }

    /// Elements from rank `from` on, ascending, or from it down to rank 0
    /// when `rev`: one descent to start, then O(1) amortised a step
    /// (a range of m elements costs O(log n + m), not O(m log n)).
    pub fn walk(&self, from: usize, rev: bool) -> Walk<'_> {
        let mut w = Walk {
            tree: self,
            stack: [NIL; WALK_DEPTH],
            depth: 0,
            rev,
        };
        if from >= self.len {
            return w;
        }
        // Down to the element at `from`, stacking the ancestors that come
        // after it in the walk's direction (and the element itself).
        let mut k = from;
        let mut n = self.root;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let ls = self.size(node.left) as usize;
            match k.cmp(&ls) {
                Ordering::Less => {
                    if !rev {
                        w.push(n);
                    }
                    n = node.left;
                }
                Ordering::Equal => {
                    w.push(n);
                    break;
                }
                Ordering::Greater => {
                    if rev {
                        w.push(n);
                    }
                    k -= ls + 1;
                    n = node.right;
                }
            }
        }
        w
    }
}

/// An AVL tree of 2^32 nodes is at most 46 levels high.
const WALK_DEPTH: usize = 64;

/// An in-order walk of a [`RankTree`] (see [`RankTree::walk`]); the stack
/// holds the nodes still to visit whose subtree on the far side is not
/// entered yet.
pub struct Walk<'a> {
    tree: &'a RankTree,
    stack: [u32; WALK_DEPTH],
    depth: usize,
    rev: bool,
}

impl Walk<'_> {
    fn push(&mut self, n: u32) {
        self.stack[self.depth] = n;
        self.depth += 1;
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = (f64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.depth == 0 {
            return None;
        }
        self.depth -= 1;
        let tree = self.tree;
        let node = &tree.nodes[self.stack[self.depth] as usize];
        // The next in line: the nearest end of the subtree beyond this node.
        let (mut c, rev) = if self.rev {
            (node.left, true)
        } else {
            (node.right, false)
        };
        while c != NIL {
            self.push(c);
            let n = &tree.nodes[c as usize];
            c = if rev { n.right } else { n.left };
        }
        Some((node.score, &node.member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a sorted vector as the model.
        #[test]
        fn behaves_like_a_sorted_vec(ops in proptest::collection::vec((any::<bool>(), 0u8..40, -5i8..5), 1..300)) {
            let mut t = RankTree::new();
            let mut model: Vec<(f64, Vec<u8>)> = Vec::new();
            for (ins, m, s) in ops {
                let member = vec![b'a' + (m % 26), m];
                let score = s as f64;
                let pos = model.iter().position(|(ms, mm)| *mm == member && *ms == score);
                let present = model.iter().any(|(_, mm)| *mm == member);
                if ins && !present {
                    t.insert(score, &member);
                    model.push((score, member));
                    model.sort_by(|a, b| cmp_entry(a.0, &a.1, b.0, &b.1));
                } else if !ins {
                    if let Some(p) = pos {
                        prop_assert!(t.remove(score, &member));
                        model.remove(p);
                    } else {
                        prop_assert!(!t.remove(score, &member));
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            for (i, (s, m)) in model.iter().enumerate() {
                prop_assert_eq!(t.rank(*s, m), Some(i));
                let (ts, tm) = t.select(i).unwrap();
                prop_assert_eq!((ts, tm), (*s, m.as_slice()));
            }
            prop_assert!(t.select(model.len()).is_none());
            let below_zero = model.iter().filter(|(s, _)| *s < 0.0).count();
            prop_assert_eq!(t.count_before(|s, _| s >= 0.0), below_zero);
        }
    }

    proptest! {
        /// A bulk-built tree answers like one built by inserts, and stays
        /// a valid AVL tree through later inserts and removals.
        #[test]
        fn from_sorted_matches_inserts(n in 0usize..300, extra in proptest::collection::vec(0u16..400, 0..50)) {
            let items: Vec<(f64, SBytes)> = (0..n)
                .map(|i| ((i / 3) as f64, SBytes::new(format!("m{i:04}").as_bytes())))
                .collect();
            let mut t = RankTree::from_sorted(items.clone());
            prop_assert_eq!(t.len(), n);
            prop_assert!(t.height(t.root) as f64 <= (n as f64 + 1.0).log2().ceil() + 1.0);
            for (i, (s, m)) in items.iter().enumerate() {
                prop_assert_eq!(t.rank(*s, m), Some(i));
            }
            let mut model: Vec<(f64, Vec<u8>)> = items.iter().map(|(s, m)| (*s, m.to_vec())).collect();
            for k in extra {
                let (s, m) = ((k / 3) as f64, format!("m{k:04}").into_bytes());
                if let Some(p) = model.iter().position(|e| e.0 == s && e.1 == m) {
                    prop_assert!(t.remove(s, &m));
                    model.remove(p);
                } else {
                    t.insert(s, &m);
                    model.push((s, m));
                    model.sort_by(|a, b| cmp_entry(a.0, &a.1, b.0, &b.1));
                }
            }
            for (i, (s, m)) in model.iter().enumerate() {
                prop_assert_eq!(t.select(i), Some((*s, m.as_slice())));
            }
        }
    }

    proptest! {
        /// Walks in both directions from every rank give the ranks' elements.
        #[test]
        fn walks_match_select(n in 0usize..200, removals in proptest::collection::vec(0usize..200, 0..40)) {
            let mut t = RankTree::new();
            for i in 0..n {
                t.insert((i % 7) as f64, format!("m{i:03}").as_bytes());
            }
            for r in removals {
                if let Some((s, m)) = t.select(r).map(|(s, m)| (s, m.to_vec())) {
                    t.remove(s, &m);
                }
            }
            let all: Vec<(f64, Vec<u8>)> = (0..t.len()).map(|i| {
                let (s, m) = t.select(i).unwrap();
                (s, m.to_vec())
            }).collect();
            for from in 0..=t.len() {
                let fwd: Vec<(f64, Vec<u8>)> = t.walk(from, false).map(|(s, m)| (s, m.to_vec())).collect();
                prop_assert_eq!(&fwd[..], &all[from.min(all.len())..]);
                let back: Vec<(f64, Vec<u8>)> = t.walk(from, true).map(|(s, m)| (s, m.to_vec())).collect();
                let want: Vec<(f64, Vec<u8>)> = if from < all.len() {
                    all[..=from].iter().rev().cloned().collect()
                } else {
                    Vec::new()
                };
                prop_assert_eq!(back, want);
            }
        }
    }

    #[test]
    fn default_is_empty() {
        let mut t = RankTree::default();
        assert!(t.select(0).is_none());
        t.insert(1.0, b"a");
        assert_eq!(t.rank(1.0, b"a"), Some(0));
    }

    #[test]
    fn large_tree_stays_balanced_and_fast() {
        let mut t = RankTree::new();
        for i in 0..100_000 {
            t.insert(i as f64, format!("m{i}").as_bytes());
        }
        assert_eq!(t.rank(500.0, b"m500"), Some(500));
        assert!(t.height(t.root) <= 25);
        for i in (0..100_000).step_by(2) {
            assert!(t.remove(i as f64, format!("m{i}").as_bytes()));
        }
        assert_eq!(t.len(), 50_000);
        assert_eq!(t.select(0).map(|(s, _)| s), Some(1.0));
        assert!(t.height(t.root) <= 25);
    }
}
