//! SLOWLOG: the most recent commands that took longer than
//! `slowlog-log-slower-than` microseconds.

use std::collections::VecDeque;

pub struct SlowEntry {
    pub id: u64,
    pub time_s: i64,
    pub duration_us: i64,
    pub args: Vec<Vec<u8>>,
    pub peer: String,
    pub name: Vec<u8>,
}

pub struct SlowLog {
    pub entries: VecDeque<SlowEntry>,
    pub next_id: u64,
    pub max_len: usize,
}

/// Redis keeps at most 32 arguments, each cut to 128 bytes.
const MAX_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 128;

impl SlowLog {
    pub fn new(max_len: usize) -> Self {
        SlowLog {
            entries: VecDeque::new(),
            next_id: 0,
            max_len,
        }
    }

    pub fn push<'a>(
        &mut self,
        args: impl ExactSizeIterator<Item = &'a [u8]>,
        duration_us: i64,
        peer: String,
        name: Vec<u8>,
    ) {
        let argc = args.len();
        let mut v = Vec::new();
        for (i, a) in args.enumerate() {
            if i == MAX_ARGS - 1 && argc > MAX_ARGS {
                v.push(format!("... ({} more arguments)", argc - MAX_ARGS + 1).into_bytes());
                break;
            }
            if a.len() > MAX_ARG_LEN {
                let mut s = a[..MAX_ARG_LEN].to_vec();
                s.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_ARG_LEN).as_bytes(),
                );
                v.push(s);
            } else {
                v.push(a.to_vec());
            }
        }
        self.entries.push_front(SlowEntry {
            id: self.next_id,
            time_s: crate::keyspace::now_ms() / 1000,
            duration_us,
            args: v,
            peer,
            name,
        });
        self.next_id += 1;
        while self.entries.len() > self.max_len {
            self.entries.pop_back();
        }
    }
}
