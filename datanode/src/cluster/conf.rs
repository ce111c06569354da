//! `nodes.conf`: the CLUSTER NODES lines (with aux fields) plus a
//! `vars currentEpoch N lastVoteEpoch M` line. Written atomically, loaded
//! at start, and locked so two processes cannot share it.

use std::io::Write as _;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::bus::flags;
use super::id::NodeId;
use super::node::Node;
use super::state::State;
use crate::keyspace::SLOTS;

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("line {line}: {what}")]
    Corrupt { line: usize, what: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn corrupt(line: usize, what: impl Into<String>) -> ConfError {
    ConfError::Corrupt {
        line,
        what: what.into(),
    }
}

/// Takes an exclusive lock beside the file (`<file>.lock`) for the life
/// of the process. The file itself is replaced by rename on every save,
/// so a lock on it would not survive the first save.
pub fn lock(path: &Path) -> Result<std::fs::File, String> {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| {
            format!(
                "Can't open {} in order to acquire a lock: {e}",
                path.display()
            )
        })?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "Sorry, the cluster configuration file {} is already used by a different Redis Cluster node. Please make sure that different nodes use different cluster configuration files.",
            path.display()
        ));
    }
    Ok(f)
}

/// Writes the file atomically: temp file, optional fsync, rename.
pub fn save(state: &State, fsync: bool) -> std::io::Result<()> {
    write_atomic(&state.settings.config_file, &state.config_text(), fsync)
}

/// Writes `text` to `path` atomically: temp file, optional fsync, rename.
pub fn write_atomic(path: &Path, text: &str, fsync: bool) -> std::io::Result<()> {
    // Unique per call: SAVECONFIG writes from a command thread while the
    // saver thread may be writing the same file in the same millisecond.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = format!(
        "{}.tmp-{}-{}",
        path.display(),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        if fsync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if fsync {
            if let Some(dir) = path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes nodes.conf on a thread of its own, so a change that needs no
/// fsync (a SETSLOT of a reshard) does not hold the command thread for the
/// file system's rename. Requests are written in order; when several wait,
/// only the newest text is written. A request that needs an fsync (epochs,
/// votes, roles) is waited for, so it is on disk before anyone hears of it.
pub struct Saver {
    tx: std::sync::mpsc::Sender<SaveRequest>,
}

struct SaveRequest {
    path: std::path::PathBuf,
    text: String,
    fsync: bool,
    done: Option<std::sync::mpsc::Sender<std::io::Result<()>>>,
}

impl Saver {
    pub fn start() -> Saver {
        let (tx, rx) = std::sync::mpsc::channel::<SaveRequest>();
        let spawned = std::thread::Builder::new()
            .name("nodes-conf".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let fsync = batch.iter().any(|r| r.fsync);
                    let Some(last) = batch.last() else { continue };
                    let res = write_atomic(&last.path, &last.text, fsync);
                    if let Err(e) = &res {
                        tracing::warn!("Could not save the cluster config: {e}");
                    }
                    for r in batch {
                        if let Some(done) = r.done {
                            let _ = done.send(match &res {
                                Ok(()) => Ok(()),
                                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                            });
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("Could not start the cluster config writer: {e}");
        }
        Saver { tx }
    }

    /// Queues the state's config; waits for it when `wait` (or when the
    /// writer is gone, writes it here).
    pub fn save(&self, state: &State, fsync: bool, wait: bool) -> std::io::Result<()> {
        let (done, rx) = if wait {
            let (t, r) = std::sync::mpsc::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let req = SaveRequest {
            path: state.settings.config_file.clone(),
            text: state.config_text(),
            fsync,
            done,
        };
        if let Err(std::sync::mpsc::SendError(req)) = self.tx.send(req) {
            return write_atomic(&req.path, &req.text, req.fsync);
        }
        match rx {
            Some(rx) => rx
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("the config writer stopped"))),
            None => Ok(()),
        }
    }
}

/// Parses `ip:port@cport[,hostname[,key=value…]]`.
/// ip, port, bus port, hostname, aux key/values.
type Addr = (String, u16, Option<u16>, String, Vec<(String, String)>);

fn parse_addr(s: &str) -> Option<Addr> {
    let mut parts = s.split(',');
    let main = parts.next()?;
    let hostname = parts.next().unwrap_or("").to_string();
    let aux: Vec<(String, String)> = parts
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let (hostport, cport) = match main.rsplit_once('@') {
        Some((hp, c)) => (hp, Some(c.parse().ok()?)),
        None => (main, None),
    };
    let (ip, port) = hostport.rsplit_once(':')?;
    Some((ip.to_string(), port.parse().ok()?, cport, hostname, aux))
}

fn get_or_create(state: &mut State, id: NodeId, now: i64) -> &mut Node {
    state
        .nodes
        .entry(id)
        .or_insert_with(|| Node::new(id, id, 0, now))
}

/// Whether the node a nodes.conf text describes as `myself` is a
/// replica: a restart from an RDB needs to know before the cluster starts
/// (a replica continues its master's history, a master starts a new one).
pub fn myself_is_replica(text: &str) -> bool {
    text.lines().any(|line| {
        line.split(' ')
            .filter(|s| !s.is_empty())
            .nth(2)
            .is_some_and(|flags| {
                let mut f = flags.split(',');
                let (mut me, mut replica) = (false, false);
                for x in f.by_ref() {
                    me |= x == "myself";
                    replica |= x == "slave";
                }
                me && replica
            })
    })
}

/// Loads the file into a fresh state. `Ok(None)` when the file does not
/// exist or is empty (a new node).
pub fn load(state: &mut State, now: i64) -> Result<bool, ConfError> {
    let path = state.settings.config_file.clone();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    load_text(state, &text, now)
}

/// Loads the file's text into a fresh state (see [`load`]).
pub fn load_text(state: &mut State, text: &str, now: i64) -> Result<bool, ConfError> {
    if text.trim().is_empty() {
        return Ok(false);
    }
    let fresh_me = state.me;
    state.nodes.clear();
    let mut myself: Option<NodeId> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let f: Vec<&str> = line.split(' ').filter(|s| !s.is_empty()).collect();
        if f.is_empty() {
            continue;
        }
        if f[0] == "vars" {
            let mut j = 1;
            while j + 1 < f.len() {
                match f[j] {
                    "currentEpoch" => {
                        state.current_epoch = f[j + 1]
                            .parse()
                            .map_err(|_| corrupt(lineno, "bad currentEpoch"))?
                    }
                    "lastVoteEpoch" => {
                        state.last_vote_epoch = f[j + 1]
                            .parse()
                            .map_err(|_| corrupt(lineno, "bad lastVoteEpoch"))?
                    }
                    _ => {}
                }
                j += 2;
            }
            continue;
        }
        if f.len() < 8 {
            return Err(corrupt(lineno, "a node line needs at least 8 fields"));
        }
        let id = NodeId::parse(f[0].as_bytes()).ok_or_else(|| corrupt(lineno, "bad node id"))?;
        let (ip, port, cport, hostname, aux) =
            parse_addr(f[1]).ok_or_else(|| corrupt(lineno, "bad address"))?;
        let fl = Node::parse_flags(f[2]).ok_or_else(|| corrupt(lineno, "unknown flag"))?;
        let master = match f[3] {
            "-" => None,
            m => Some(NodeId::parse(m.as_bytes()).ok_or_else(|| corrupt(lineno, "bad master id"))?),
        };
        let epoch: u64 = f[6]
            .parse()
            .map_err(|_| corrupt(lineno, "bad config epoch"))?;
        if let Some(m) = master {
            get_or_create(state, m, now);
        }
        {
            let n = get_or_create(state, id, now);
            n.flags = fl;
            n.ip = ip;
            n.port = port;
            n.cport = cport.unwrap_or(port.wrapping_add(10000));
            n.hostname = hostname;
            n.master = master;
            n.config_epoch = epoch;
            if f[4] != "0" {
                n.ping_sent = now;
            }
            if f[5] != "0" {
                n.pong_received = now;
            }
            for (k, v) in &aux {
                if k == "shard-id" {
                    if let Some(s) = NodeId::parse(v.as_bytes()) {
                        n.shard_id = s;
                    }
                }
            }
        }
        if fl & flags::MYSELF != 0 {
            if myself.is_some() {
                return Err(corrupt(lineno, "more than one myself line"));
            }
            if fl & (flags::MASTER | flags::SLAVE) == 0 {
                return Err(corrupt(lineno, "myself is neither master nor slave"));
            }
            myself = Some(id);
        }
        for tok in &f[8..] {
            if let Some(inner) = tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                let (slot, dir, other) = if let Some((s, o)) = inner.split_once("->-") {
                    (s, true, o)
                } else if let Some((s, o)) = inner.split_once("-<-") {
                    (s, false, o)
                } else {
                    return Err(corrupt(lineno, "bad open slot"));
                };
                let slot: u16 = slot
                    .parse()
                    .ok()
                    .filter(|s| (*s as usize) < SLOTS)
                    .ok_or_else(|| corrupt(lineno, "bad slot"))?;
                let other = NodeId::parse(other.as_bytes())
                    .ok_or_else(|| corrupt(lineno, "bad node id in open slot"))?;
                get_or_create(state, other, now);
                if dir {
                    state.migrating.insert(slot, other);
                } else {
                    state.importing.insert(slot, other);
                }
                continue;
            }
            let (a, b) = match tok.split_once('-') {
                Some((a, b)) => (a, b),
                None => (*tok, *tok),
            };
            let a: usize = a.parse().map_err(|_| corrupt(lineno, "bad slot"))?;
            let b: usize = b.parse().map_err(|_| corrupt(lineno, "bad slot"))?;
            if a > b || b >= SLOTS {
                return Err(corrupt(lineno, "slot out of range"));
            }
            for s in a..=b {
                state.del_slot(s);
                state.add_slot(s, id);
            }
        }
    }
    let Some(me) = myself else {
        state.nodes.clear();
        state.me = fresh_me;
        return Err(corrupt(0, "no myself line"));
    };
    state.me = me;
    let max = state.max_config_epoch();
    if max > state.current_epoch {
        state.current_epoch = max;
    }
    // Our own ports come from the running config, not the file.
    let (port, cport) = (state.settings.port, state.settings.cport);
    let n = state.myself_mut();
    n.port = port;
    n.cport = cport;
    n.link = None;
    n.flags |= flags::EXTENSIONS_SUPPORTED;
    state.todo_route = true;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn myself_is_replica_reads_the_flags_of_the_myself_line() {
        let id = "a".repeat(40);
        let other = "b".repeat(40);
        let line = |flags: &str, master: &str| {
            format!("{id} 127.0.0.1:7000@17000 {flags} {master} 0 0 1 connected\n")
        };
        assert!(myself_is_replica(&line("myself,slave", &other)));
        assert!(!myself_is_replica(&line("myself,master", "-")));
        // Another node's replica flag is not ours.
        assert!(!myself_is_replica(
            &(line("slave", &other) + &line("myself,master", "-"))
        ));
        assert!(!myself_is_replica(""));
    }
}
