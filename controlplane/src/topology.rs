//! The cluster as the nodes report it: `CLUSTER NODES` text parsed into
//! plain values. Pure: no I/O here.

use serde::Serialize;

pub const SLOTS: u16 = 16384;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    pub id: String,
    /// `host:port` (the client port).
    pub address: String,
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master: Option<String>,
    pub config_epoch: u64,
    pub connected: bool,
    /// Owned slots as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
    /// Slots this node is migrating to / importing from another (slot, peer id).
    pub migrating: Vec<(u16, String)>,
    pub importing: Vec<(u16, String)>,
}

impl NodeLine {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    pub fn is_master(&self) -> bool {
        self.has("master")
    }
    pub fn is_myself(&self) -> bool {
        self.has("myself")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed CLUSTER NODES line {line}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub why: &'static str,
}

/// Parses `CLUSTER NODES` output.
pub fn parse_nodes(text: &str) -> Result<Vec<NodeLine>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |why| ParseError { line: i + 1, why };
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 8 {
            return Err(err("fewer than 8 fields"));
        }
        let id = f[0].to_string();
        if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("bad node id"));
        }
        let hostport = f[1].split(['@', ',']).next().unwrap_or("");
        let flags: Vec<String> = f[2].split(',').map(str::to_string).collect();
        let master = (f[3] != "-").then(|| f[3].to_string());
        let config_epoch = f[6].parse().map_err(|_| err("bad config epoch"))?;
        let connected = f[7] == "connected";
        let mut slots = Vec::new();
        let mut migrating = Vec::new();
        let mut importing = Vec::new();
        for s in &f[8..] {
            if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                if let Some((slot, peer)) = inner.split_once("->-") {
                    let slot = slot.parse().map_err(|_| err("bad migrating slot"))?;
                    migrating.push((slot, peer.to_string()));
                } else if let Some((slot, peer)) = inner.split_once("-<-") {
                    let slot = slot.parse().map_err(|_| err("bad importing slot"))?;
                    importing.push((slot, peer.to_string()));
                } else {
                    return Err(err("bad slot state"));
                }
                continue;
            }
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                None => (s.parse::<u16>(), s.parse::<u16>()),
            };
            match (a, b) {
                (Ok(a), Ok(b)) if a <= b && b < SLOTS => slots.push((a, b)),
                _ => return Err(err("bad slot range")),
            }
        }
        out.push(NodeLine {
            id,
            address: hostport.to_string(),
            flags,
            master,
            config_epoch,
            connected,
            slots,
            migrating,
            importing,
        });
    }
    Ok(out)
}

/// Merges a sorted list of slots into inclusive ranges.
pub fn ranges_of(slots: impl IntoIterator<Item = u16>) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in slots {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004,host1 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@40003 master,fail? - 0 1426238318243 3 disconnected 10923-16383 [10923->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 7000 [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn parses_every_field() {
        let n = parse_nodes(TEXT).unwrap();
        assert_eq!(n.len(), 4);
        assert_eq!(n[0].address, "127.0.0.1:30004");
        assert_eq!(
            n[0].master.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(!n[0].is_master());
        assert_eq!(n[1].slots, vec![(5461, 10922)]);
        assert!(n[2].has("fail?") && !n[2].connected);
        assert_eq!(n[2].migrating.len(), 1);
        assert!(n[3].is_myself());
        assert_eq!(n[3].slots, vec![(0, 5460), (7000, 7000)]);
        assert_eq!(n[3].importing[0].0, 5461);
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_nodes("abc").is_err());
        let bad = TEXT.replace("0-5460", "5460-0");
        assert_eq!(parse_nodes(&bad).unwrap_err().line, 4);
    }

    #[test]
    fn merges_ranges() {
        assert_eq!(
            ranges_of([1, 2, 3, 7, 9, 10]),
            vec![(1, 3), (7, 7), (9, 10)]
        );
        assert!(ranges_of([]).is_empty());
    }
}
