//! The writes an atomic slot migration forwards: the source's replication
//! stream from the snapshot's cut on, keeping only commands whose keys are
//! in the job's slots. Transaction wrappers and keyless commands are
//! dropped (the target shows the slots all at once, so a torn transaction
//! is never visible); a SELECT is written when the database changes.

use crate::command::{table, Args};
use crate::keyspace::hashslot::key_slot;
use crate::resp::parse::encode_command;

#[derive(Debug, PartialEq, Eq)]
pub enum FeedError {
    /// FLUSHALL or FLUSHDB went by: the job cannot stand for the slots.
    Flushed,
    /// The stream does not parse (never expected: we wrote it).
    Protocol(String),
}

pub struct Filter {
    slots: std::sync::Arc<Vec<bool>>,
    /// The database the stream is in, and the one last selected on the
    /// target.
    db: usize,
    out_db: Option<usize>,
    ranges: Vec<std::ops::Range<usize>>,
    scratch: Vec<u8>,
}

impl Filter {
    pub fn new(slots: std::sync::Arc<Vec<bool>>) -> Filter {
        Filter {
            slots,
            // A stream cut for a snapshot starts with a SELECT.
            db: 0,
            out_db: None,
            ranges: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Reads the complete commands at the start of `input`, appending the
    /// kept ones to `out`. Returns the bytes consumed and commands kept; a
    /// command cut short stays for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, u64), FeedError> {
        let limits = crate::resp::Limits {
            max_bulk_len: i64::MAX,
            authenticated: true,
        };
        let mut pos = 0;
        let mut kept = 0;
        loop {
            let parsed = crate::resp::parse_request(
                &input[pos..],
                &limits,
                &mut self.ranges,
                &mut self.scratch,
            )
            .map_err(|e| FeedError::Protocol(e.to_string()))?;
            let (consumed, inline) = match parsed {
                None => break,
                Some(crate::resp::Parsed::Empty { consumed }) => {
                    pos += consumed;
                    continue;
                }
                Some(crate::resp::Parsed::Multibulk { consumed }) => (consumed, false),
                Some(crate::resp::Parsed::Inline { consumed }) => (consumed, true),
            };
            let raw = &input[pos..pos + consumed];
            let args = if inline {
                Args::new(&self.scratch, &self.ranges)
            } else {
                Args::new(raw, &self.ranges)
            };
            if keep(&mut self.db, &self.slots, &args)? {
                if self.out_db != Some(self.db) {
                    let mut b = itoa::Buffer::new();
                    encode_command(&[b"SELECT".as_slice(), b.format(self.db).as_bytes()], out);
                    self.out_db = Some(self.db);
                }
                if inline {
                    let v: Vec<&[u8]> = args.iter().collect();
                    encode_command(&v, out);
                } else {
                    out.extend_from_slice(raw);
                }
                kept += 1;
            }
            pos += consumed;
        }
        Ok((pos, kept))
    }
}

/// Whether the job forwards this command (tracking SELECTs in `db`).
fn keep(db: &mut usize, slots: &[bool], args: &Args) -> Result<bool, FeedError> {
    {
        if args.is_empty() {
            return Ok(false);
        }
        let name = args.get(0);
        if name.eq_ignore_ascii_case(b"SELECT") {
            if let Some(d) = args
                .iter()
                .nth(1)
                .and_then(crate::resp::parse_i64)
                .filter(|d| *d >= 0)
            {
                *db = d as usize;
            }
            return Ok(false);
        }
        if name.eq_ignore_ascii_case(b"FLUSHALL") || name.eq_ignore_ascii_case(b"FLUSHDB") {
            return Err(FeedError::Flushed);
        }
        let Some(mut cmd) = table::lookup(name) else {
            return Ok(false);
        };
        if !cmd.subs.is_empty() && args.len() >= 2 {
            match table::lookup_sub(cmd, args.get(1)) {
                Some(sc) => cmd = sc,
                None => return Ok(false),
            }
        }
        let mut slot = None;
        cmd.each_key(args, |k| {
            slot = Some(key_slot(k));
            false
        });
        Ok(slot.is_some_and(|s| slots.get(s as usize).copied().unwrap_or(false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(parts: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        let p: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
        encode_command(&p, &mut v);
        v
    }

    #[test]
    fn keeps_the_job_slots_commands_in_order() {
        let a = key_slot(b"a") as usize;
        let mut slots = vec![false; crate::keyspace::SLOTS];
        slots[a] = true;
        let mut f = Filter::new(std::sync::Arc::new(slots));
        let mut input = Vec::new();
        for c in [
            enc(&["SELECT", "0"]),
            enc(&["MULTI"]),
            enc(&["SET", "a", "1"]),
            enc(&["SET", "b", "2"]),
            enc(&["EXEC"]),
            enc(&["PING"]),
            enc(&["RPUSH", "a", "x", "y"]),
        ] {
            input.extend(c);
        }
        // A command cut short waits for the rest.
        let tail = enc(&["DEL", "a"]);
        input.extend_from_slice(&tail[..5]);
        let mut out = Vec::new();
        let (used, kept) = f.feed(&input, &mut out).unwrap();
        assert_eq!((used, kept), (input.len() - 5, 2));
        let mut want = enc(&["SELECT", "0"]);
        want.extend(enc(&["SET", "a", "1"]));
        want.extend(enc(&["RPUSH", "a", "x", "y"]));
        assert_eq!(out, want);
        out.clear();
        assert_eq!(f.feed(&tail, &mut out).unwrap(), (tail.len(), 1));
        assert_eq!(out, tail);
        assert_eq!(
            f.feed(&enc(&["FLUSHALL"]), &mut out),
            Err(FeedError::Flushed)
        );
    }
}
