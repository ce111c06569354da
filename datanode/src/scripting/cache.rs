//! The script cache: every script EVAL ran or SCRIPT LOAD loaded, by SHA-1,
//! shared by all interpreters. SCRIPT FLUSH bumps the epoch, which makes
//! each interpreter drop what it compiled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

pub struct Script {
    pub sha: [u8; 40],
    pub body: Vec<u8>,
    /// `scripting::flag` bits from the shebang.
    pub flags: u32,
    /// Its last run was short: the next may run on the command thread.
    pub fast: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub struct ScriptCache {
    map: RwLock<crate::keyspace::value::FastMap<[u8; 40], Arc<Script>>>,
    epoch: AtomicU64,
    bytes: AtomicU64,
}

impl ScriptCache {
    /// Looks a script up by its SHA-1 in any case (Redis compares without
    /// case).
    pub fn get(&self, sha: &[u8]) -> Option<Arc<Script>> {
        let key: [u8; 40] = sha.try_into().ok()?;
        let key = key.map(|c| c.to_ascii_lowercase());
        self.map.read().get(&key).cloned()
    }

    pub fn insert(&self, s: Script) -> Arc<Script> {
        let mut m = self.map.write();
        if let Some(old) = m.get(&s.sha) {
            return old.clone();
        }
        self.bytes
            .fetch_add((s.body.len() + 40 + 64) as u64, Ordering::Relaxed);
        let s = Arc::new(s);
        m.insert(s.sha, s.clone());
        s
    }

    pub fn flush(&self) {
        let old = std::mem::take(&mut *self.map.write());
        self.bytes.store(0, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        drop(old);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the cached bodies take (INFO's `used_memory_scripts_eval`).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
