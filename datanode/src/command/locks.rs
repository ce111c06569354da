//! Slot locking for commands. Outside EXEC a command locks what it touches
//! and releases it when done; inside EXEC every slot the transaction touches
//! is locked up front (in ascending order) and commands borrow those guards.

use std::ops::{Deref, DerefMut};

use smallvec::SmallVec;

use crate::keyspace::{key_slot, Db, Keyspace, SlotRef, SLOTS};

/// Held guards: one inline, so a routed command's hold allocates nothing.
type Held<'a> = SmallVec<[SlotRef<'a>; 1]>;

pub struct Locks<'a> {
    pub ks: &'a Keyspace,
    pub db: &'a Db,
    pub now: i64,
    /// Guards held for a whole EXEC or script, sorted by (db, slot); or
    /// the one slot of a routed command (`routing`).
    held: Held<'a>,
    /// `held` is a single command's slot, locked from its cluster routing
    /// check to the end of its handler so a MIGRATE cannot move its keys
    /// in between (see `command::dispatch`). Such a command still blocks
    /// as one on its own does, unlike inside EXEC or a script.
    routing: bool,
}

pub enum Guard<'g, 'a> {
    Own(SlotRef<'a>),
    Held(&'g mut SlotRef<'a>),
}

impl<'a> Deref for Guard<'_, 'a> {
    type Target = SlotRef<'a>;
    fn deref(&self) -> &SlotRef<'a> {
        match self {
            Guard::Own(s) => s,
            Guard::Held(s) => s,
        }
    }
}

impl DerefMut for Guard<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Guard::Own(s) => s,
            Guard::Held(s) => s,
        }
    }
}

/// Several slots locked together for a multi-key command.
pub struct Many<'g, 'a> {
    own: Vec<SlotRef<'a>>,
    held: Option<&'g mut Held<'a>>,
    db: usize,
}

impl<'a> Many<'_, 'a> {
    /// The locked slot holding `key` (it must be one of those requested).
    pub fn key(&mut self, key: &[u8]) -> &mut SlotRef<'a> {
        self.slot(key_slot(key))
    }

    /// The locked slot, or None when it was not locked (never panics).
    pub fn try_slot(&mut self, slot: u16) -> Option<&mut SlotRef<'a>> {
        let db = self.db;
        let v: &mut [SlotRef<'a>] = match &mut self.held {
            Some(h) => h,
            None => &mut self.own,
        };
        let i = v
            .binary_search_by(|s| (s.db.index, s.slot).cmp(&(db, slot)))
            .ok()?;
        Some(&mut v[i])
    }

    pub fn slot(&mut self, slot: u16) -> &mut SlotRef<'a> {
        let db = self.db;
        let v: &mut [SlotRef<'a>] = match &mut self.held {
            Some(h) => h,
            None => &mut self.own,
        };
        let i = v
            .binary_search_by(|s| (s.db.index, s.slot).cmp(&(db, slot)))
            .unwrap_or_else(|_| panic!("slot {slot} of db {db} was not locked"));
        &mut v[i]
    }
}

impl<'a> Locks<'a> {
    pub fn new(ks: &'a Keyspace, db: &'a Db, now: i64) -> Self {
        Locks {
            ks,
            db,
            now,
            held: SmallVec::new(),
            routing: false,
        }
    }

    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Inside EXEC or a script, where a blocking command replies at once
    /// instead of blocking.
    pub fn in_batch(&self) -> bool {
        self.holding() && !self.routing
    }

    /// Locks one slot of the selected database for a single command, from
    /// its routing check to the end of its handler.
    pub fn hold_routed(&mut self, slot: u16) {
        self.held.push(self.db.lock_slot(slot, self.now));
        self.routing = true;
    }

    /// Lets go of the slots an EXEC holds, so that a command reaching
    /// every slot (DEBUG RELOAD, DEBUG LOADAOF) can lock them itself
    /// rather than wait on its own transaction; [`Locks::relock`] takes
    /// them back in the same order. Only for commands during which no
    /// other client runs (one worker thread, or a pause of all clients).
    pub fn release_held(&mut self) -> Vec<(&'a Db, u16)> {
        self.held.drain(..).map(|s| (s.db, s.slot)).collect()
    }

    /// Locks again what [`Locks::release_held`] let go.
    pub fn relock(&mut self, slots: Vec<(&'a Db, u16)>) {
        for (db, slot) in slots {
            self.held.push(db.lock_slot(slot, self.now));
        }
    }

    fn held_index(&self, db: usize, slot: u16) -> Option<usize> {
        self.held
            .binary_search_by(|s| (s.db.index, s.slot).cmp(&(db, slot)))
            .ok()
    }

    pub fn key<'g>(&'g mut self, key: &[u8]) -> Guard<'g, 'a> {
        self.slot(key_slot(key))
    }

    pub fn slot<'g>(&'g mut self, slot: u16) -> Guard<'g, 'a> {
        match self.held_index(self.db.index, slot) {
            Some(i) => Guard::Held(&mut self.held[i]),
            None => Guard::Own(self.db.lock_slot(slot, self.now)),
        }
    }

    /// Locks the slots of all `keys` (ascending order, deduplicated).
    pub fn keys<'g, 'k>(&'g mut self, keys: impl Iterator<Item = &'k [u8]>) -> Many<'g, 'a> {
        let db = self.db.index;
        if self.holding() {
            return Many {
                own: Vec::new(),
                held: Some(&mut self.held),
                db,
            };
        }
        let mut slots: Vec<u16> = keys.map(key_slot).collect();
        Many {
            own: self.db.lock_slots(&mut slots, self.now),
            held: None,
            db,
        }
    }

    /// Locks the given slots of the selected database (ascending order,
    /// deduplicated); inside EXEC, borrows the held set instead.
    pub fn slots<'g>(&'g mut self, mut slots: Vec<u16>) -> Many<'g, 'a> {
        let db = self.db.index;
        if self.holding() {
            return Many {
                own: Vec::new(),
                held: Some(&mut self.held),
                db,
            };
        }
        Many {
            own: self.db.lock_slots(&mut slots, self.now),
            held: None,
            db,
        }
    }

    /// Runs `f` on every slot of databases `a` and `b` (distinct), paired
    /// slot by slot, with all 2 × 16384 slots locked at once so no client
    /// sees one half done (SWAPDB). Inside EXEC the held guards are used;
    /// they must cover both databases whole. Returns the rewrite
    /// generation the guards agree on.
    pub fn with_two_dbs(
        &mut self,
        a: &'a Db,
        b: &'a Db,
        mut f: impl FnMut(&mut SlotRef<'a>, &mut SlotRef<'a>),
    ) -> u64 {
        let (lo, hi) = if a.index < b.index { (a, b) } else { (b, a) };
        if self.holding() {
            let last = SLOTS as u16 - 1;
            let (Some(il), Some(ih)) = (self.held_index(lo.index, 0), self.held_index(hi.index, 0))
            else {
                return self.held_gen();
            };
            // EXEC holds both databases whole, so each is one contiguous run.
            if self.held_index(lo.index, last) != Some(il + last as usize)
                || self.held_index(hi.index, last) != Some(ih + last as usize)
            {
                return self.held_gen();
            }
            let (l, r) = self.held.split_at_mut(ih);
            let lows = &mut l[il..il + SLOTS];
            let highs = &mut r[..SLOTS];
            for (x, y) in lows.iter_mut().zip(highs.iter_mut()) {
                f(x, y);
            }
            return self.held_gen();
        }
        // The global order is (db, slot): all of the lower database first.
        let now = self.now;
        let mut lows: Vec<SlotRef<'a>> = (0..SLOTS as u16).map(|s| lo.lock_slot(s, now)).collect();
        let mut highs: Vec<SlotRef<'a>> = (0..SLOTS as u16).map(|s| hi.lock_slot(s, now)).collect();
        // A rewrite may have begun while we were locking (see lock_slots).
        for s in lows.iter_mut().chain(highs.iter_mut()) {
            s.refresh_gen();
        }
        let gen = lows[0].gen();
        for (x, y) in lows.iter_mut().zip(highs.iter_mut()) {
            f(x, y);
        }
        gen
    }

    /// Locks the given slots of another database too (COPY … DB n).
    pub fn keys_two_dbs<'g>(
        &'g mut self,
        a: (&'a Db, &[u8]),
        b: (&'a Db, &[u8]),
    ) -> (Guard<'g, 'a>, Option<Guard<'g, 'a>>) {
        let (sa, sb) = (key_slot(a.1), key_slot(b.1));
        if a.0.index == b.0.index && sa == sb {
            let g = match self.held_index(a.0.index, sa) {
                Some(i) => Guard::Held(&mut self.held[i]),
                None => Guard::Own(a.0.lock_slot(sa, self.now)),
            };
            return (g, None);
        }
        if self.holding() {
            // Both must be held; split the borrow.
            let ia = self.held_index(a.0.index, sa);
            let ib = self.held_index(b.0.index, sb);
            if let (Some(ia), Some(ib)) = (ia, ib) {
                let (x, y) = if ia < ib {
                    let (l, r) = self.held.split_at_mut(ib);
                    (&mut l[ia], &mut r[0])
                } else {
                    let (l, r) = self.held.split_at_mut(ia);
                    (&mut r[0], &mut l[ib])
                };
                return (Guard::Held(x), Some(Guard::Held(y)));
            }
        }
        let now = self.now;
        let (mut ga, mut gb) = if (a.0.index, sa) < (b.0.index, sb) {
            let ga = a.0.lock_slot(sa, now);
            (ga, b.0.lock_slot(sb, now))
        } else {
            let gb = b.0.lock_slot(sb, now);
            (a.0.lock_slot(sa, now), gb)
        };
        ga.refresh_gen();
        gb.refresh_gen();
        (Guard::Own(ga), Some(Guard::Own(gb)))
    }

    /// Takes the locks for a whole transaction: `slots` are (db, slot)
    /// pairs; `all_of` lists databases whose every slot must be held.
    pub fn hold(&mut self, mut slots: Vec<(usize, u16)>, all_of: &[usize]) {
        for &d in all_of {
            slots.extend((0..SLOTS as u16).map(|s| (d, s)));
        }
        slots.sort_unstable();
        slots.dedup();
        let ks = self.ks;
        let now = self.now;
        self.held = slots
            .into_iter()
            .map(|(d, s)| ks.db(d).lock_slot(s, now))
            .collect();
        for s in &mut self.held {
            s.refresh_gen();
        }
    }

    /// Adds (db, slot) pairs to the held set, for a script that reaches
    /// keys it did not declare. Slots above every held one are locked in
    /// the global order and cannot deadlock; one below is only tried, for
    /// up to `wait`: `Err` when it stayed taken.
    pub fn extend(
        &mut self,
        want: &[(usize, u16)],
        wait: std::time::Duration,
    ) -> Result<(), (usize, u16)> {
        let mut want: Vec<(usize, u16)> = want
            .iter()
            .copied()
            .filter(|&(d, s)| self.held_index(d, s).is_none())
            .collect();
        want.sort_unstable();
        want.dedup();
        let ks = self.ks;
        let now = self.now;
        for (d, s) in want {
            let top = self.held.last().map(|g| (g.db.index, g.slot));
            let guard = if top.is_none_or(|t| (d, s) > t) {
                ks.db(d).lock_slot(s, now)
            } else {
                match ks.db(d).try_lock_slot(s, now, wait) {
                    Some(g) => g,
                    None => return Err((d, s)),
                }
            };
            let at = self
                .held
                .binary_search_by(|g| (g.db.index, g.slot).cmp(&(d, s)))
                .unwrap_or_else(|i| i);
            self.held.insert(at, guard);
        }
        Ok(())
    }

    /// Whether (db, slot) is among the held guards.
    pub fn holds(&self, db: usize, slot: u16) -> bool {
        self.held_index(db, slot).is_some()
    }

    /// A held slot, read-only (the routing check's key lookups).
    pub fn held_slot(&self, db: usize, slot: u16) -> Option<&SlotRef<'a>> {
        self.held_index(db, slot).map(|i| &self.held[i])
    }

    /// The (db, slot) pairs held.
    pub fn held_slots(&self) -> Vec<(usize, u16)> {
        self.held.iter().map(|g| (g.db.index, g.slot)).collect()
    }

    /// Generation shared by the held guards (they are refreshed together).
    pub fn held_gen(&self) -> u64 {
        self.held.first().map(|s| s.gen()).unwrap_or(u64::MAX)
    }

    pub fn release(&mut self) {
        self.held.clear();
        self.routing = false;
    }
}
