//! Node ids: 40 lowercase hex characters, as Redis generates them.

use std::fmt;

pub const ID_LEN: usize = 40;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; ID_LEN]);

impl NodeId {
    /// A fresh random id (160 random bits, hex encoded).
    pub fn random() -> NodeId {
        Self::from_rng(&mut rand::rng())
    }

    /// An id drawn from `rng` (seeded states draw theirs from their own).
    pub fn from_rng(rng: &mut impl rand::Rng) -> NodeId {
        let mut raw = [0u8; 20];
        rng.fill(&mut raw[..]);
        let mut id = [0u8; ID_LEN];
        for (i, b) in raw.iter().enumerate() {
            id[2 * i] = HEX[(b >> 4) as usize];
            id[2 * i + 1] = HEX[(b & 15) as usize];
        }
        NodeId(id)
    }

    /// Accepts exactly 40 characters of `[0-9a-z]`, which is what real
    /// nodes accept in gossip and in CLUSTER commands.
    pub fn parse(b: &[u8]) -> Option<NodeId> {
        if b.len() != ID_LEN
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(b);
        Some(NodeId(id))
    }

    /// An all-zero field on the bus means "no node".
    pub fn from_wire(b: &[u8; ID_LEN]) -> Option<NodeId> {
        if b.iter().all(|&c| c == 0) {
            None
        } else {
            Some(NodeId(*b))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Ids are built from or checked against ASCII; bus ids that are not
        // are refused before a NodeId is made from them.
        std::str::from_utf8(&self.0).unwrap_or("????????????????????????????????????????")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let a = NodeId::random();
        let b = NodeId::random();
        assert_ne!(a, b);
        assert!(NodeId::parse(a.as_bytes()).is_some());
        assert!(NodeId::parse(b"abc").is_none());
        assert!(NodeId::parse(&[b'A'; 40]).is_none());
    }
}
