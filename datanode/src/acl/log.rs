//! The ACL log: recent refusals and failed logins, newest first, with
//! repeats within a minute folded into one entry.

use std::collections::VecDeque;

use super::Reason;

/// Where the refused command came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Toplevel,
    Multi,
    Lua,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Toplevel => "toplevel",
            Context::Multi => "multi",
            Context::Lua => "lua",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub count: u64,
    pub reason: Reason,
    pub context: Context,
    pub object: Vec<u8>,
    pub username: Vec<u8>,
    /// When it last happened (ms).
    pub ctime: i64,
    /// CLIENT LIST line of the last client it happened to.
    pub client_info: String,
}

/// Entries this close in time (ms) with the same facts are one entry.
const GROUPING_WINDOW_MS: i64 = 60_000;
/// How many recent entries a new one is compared with.
const GROUPING_SCAN: usize = 10;

#[derive(Default)]
pub struct Log {
    entries: VecDeque<Entry>,
}

impl Log {
    pub fn add(&mut self, e: Entry, max_len: usize) {
        let found = self.entries.iter().take(GROUPING_SCAN).position(|c| {
            c.reason == e.reason
                && c.context == e.context
                && (c.ctime - e.ctime).abs() <= GROUPING_WINDOW_MS
                && c.object == e.object
                && c.username == e.username
        });
        match found.and_then(|i| self.entries.remove(i)) {
            Some(mut m) => {
                m.count += 1;
                m.ctime = e.ctime;
                m.client_info = e.client_info;
                self.entries.push_front(m);
            }
            None => {
                self.entries.push_front(e);
                self.entries.truncate(max_len);
            }
        }
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn truncate(&mut self, max_len: usize) {
        self.entries.truncate(max_len);
    }
}
