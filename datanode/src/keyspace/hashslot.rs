//! Hash slots: CRC16-XMODEM of the key (or of its `{hash tag}`) mod 16384.

pub const SLOTS: usize = 16384;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection),
/// sixteen bytes per step: keys are hashed several times per command.
const XMODEM: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_XMODEM);

pub fn crc16(data: &[u8]) -> u16 {
    XMODEM.checksum(data)
}

/// The part of the key that is hashed: the bytes between the first `{` and
/// the first `}` after it, when that is non-empty; otherwise the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = memchr::memchr(b'{', key) {
        if let Some(len) = memchr::memchr(b'}', &key[open + 1..]) {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Keys up to this long are remembered by [`key_slot`].
const MEMO_MAX: usize = 40;

/// The last key [`key_slot`] hashed on this thread, with its slot: a
/// command's key is hashed again by each layer it passes (cluster routing,
/// locking, a script's checks before each `redis.call`), and comparing a
/// short key costs a fraction of its CRC.
struct Memo {
    len: usize,
    slot: u16,
    key: [u8; MEMO_MAX],
}

thread_local! {
    static LAST: std::cell::RefCell<Memo> = const {
        std::cell::RefCell::new(Memo { len: usize::MAX, slot: 0, key: [0; MEMO_MAX] })
    };
}

pub fn key_slot(key: &[u8]) -> u16 {
    if key.len() > MEMO_MAX {
        return slot_of(key);
    }
    LAST.with(|m| {
        let mut m = m.borrow_mut();
        if m.len == key.len() && m.key[..key.len()] == *key {
            return m.slot;
        }
        let slot = slot_of(key);
        m.key[..key.len()].copy_from_slice(key);
        m.len = key.len();
        m.slot = slot;
        slot
    })
}

fn slot_of(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }

    #[test]
    fn remembered_slots_match_computed_ones() {
        // Repeats, neighbours differing in one byte or in length, a key
        // at the memo's limit and one past it: each agrees with the CRC.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for n in 0..=MEMO_MAX + 2 {
            let k: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut other = k.clone();
            if let Some(last) = other.last_mut() {
                *last ^= 1;
            }
            keys.extend([k.clone(), k.clone(), other, k]);
        }
        keys.push(b"{tag}x".to_vec());
        keys.push(b"{tag}y".to_vec());
        for k in &keys {
            assert_eq!(key_slot(k), slot_of(k), "{:?}", String::from_utf8_lossy(k));
        }
    }

    #[test]
    fn hash_tag_rules() {
        assert_eq!(hash_tag(b"{}foo"), b"{}foo");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
    }
}
