//! Differential runner: the same script against redis-server and datanode,
//! replies compared byte for byte (or as multisets / by type where marked).
//!
//! Script lines: `CMD args…` exact; `~ CMD` unordered (aggregates compared
//! after sorting, recursively); `? CMD` only the reply type must match;
//! `@N ` before either sends on connection N (1–3); `READ` sends nothing
//! and reads one pending reply (a published message, say); `# …` comments.

use crate::process::{Node, Server};
use crate::resp::{show, split_line, Conn, Reply};

/// A reply with every aggregate sorted (for unordered comparisons).
pub fn normalize(r: &Reply) -> Reply {
    match r {
        Reply::Agg(t, items) => {
            let mut v: Vec<Reply> = items.iter().map(normalize).collect();
            v.sort();
            Reply::Agg(*t, v)
        }
        s => s.clone(),
    }
}

fn kind(raw: &[u8]) -> u8 {
    raw.first().copied().unwrap_or(b'?')
}

pub struct Pair {
    pub redis: Node,
    pub datanode: Node,
}

impl Pair {
    pub fn start(args: &[&str]) -> Pair {
        Pair {
            redis: Node::start(Server::Redis, args),
            datanode: Node::start(Server::Datanode, args),
        }
    }

    /// Runs `script` (named `name` in messages); returns every mismatch.
    pub fn run(&self, name: &str, script: &str) -> Vec<String> {
        let mut rc: Vec<Conn> = (0..3).map(|_| self.redis.conn()).collect();
        let mut dc: Vec<Conn> = (0..3).map(|_| self.datanode.conn()).collect();
        let _ = rc[0].cmd(&["FLUSHALL"]);
        let _ = dc[0].cmd(&["FLUSHALL"]);
        let mut errors = Vec::new();
        for (no, line) in script.lines().enumerate() {
            let mut l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut conn = 0;
            if let Some(rest) = l.strip_prefix('@') {
                let (n, rest) = rest.split_at(1);
                conn = n.parse::<usize>().unwrap_or(1).clamp(1, 3) - 1;
                l = rest.trim_start();
            }
            let mode = match l.as_bytes()[0] {
                b'~' | b'?' => {
                    let m = l.as_bytes()[0];
                    l = l[1..].trim_start();
                    m
                }
                _ => b'=',
            };
            let Some(args) = split_line(l) else {
                errors.push(format!("{name}:{}: cannot parse line", no + 1));
                continue;
            };
            let read_only = args.len() == 1 && args[0] == b"READ";
            let (r, d) = if read_only {
                (rc[conn].read_reply(), dc[conn].read_reply())
            } else {
                (rc[conn].cmd(&args), dc[conn].cmd(&args))
            };
            let (r, d) = match (r, d) {
                (Ok(r), Ok(d)) => (r, d),
                (r, d) => {
                    errors.push(format!(
                        "{name}:{}: `{l}`: redis {:?} datanode {:?}",
                        no + 1,
                        r.map(|x| show(&x.raw)),
                        d.map(|x| show(&x.raw))
                    ));
                    // A closed connection would fail every later line.
                    break;
                }
            };
            let same = match mode {
                b'~' => normalize(&r.tree) == normalize(&d.tree),
                b'?' => kind(&r.raw) == kind(&d.raw),
                _ => r.raw == d.raw,
            };
            if !same {
                errors.push(format!(
                    "{name}:{}: `{l}`\n    redis:    {}\n    datanode: {}",
                    no + 1,
                    show(&r.raw),
                    show(&d.raw)
                ));
            }
        }
        errors
    }
}
