//! `Key`: a stored key's bytes (up to 18 inline) together with its 32-bit
//! access data, packed into 24 bytes so a whole entry (key + value) fits
//! the allocator's 48-byte size class.

use std::fmt;

/// Keys up to this length live inside the entry, with no heap allocation.
pub const INLINE: usize = 18;

pub enum Key {
    Inline {
        meta: u32,
        len: u8,
        data: [u8; INLINE],
    },
    Heap {
        meta: u32,
        data: Box<[u8]>,
    },
}

impl Key {
    pub fn new(b: &[u8], meta: u32) -> Key {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            Key::Inline {
                meta,
                len: b.len() as u8,
                data,
            }
        } else {
            Key::Heap {
                meta,
                data: b.into(),
            }
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, data, .. } => &data[..*len as usize],
            Key::Heap { data, .. } => data,
        }
    }

    #[inline]
    pub fn meta(&self) -> u32 {
        match self {
            Key::Inline { meta, .. } | Key::Heap { meta, .. } => *meta,
        }
    }

    #[inline]
    pub fn meta_mut(&mut self) -> &mut u32 {
        match self {
            Key::Inline { meta, .. } | Key::Heap { meta, .. } => meta,
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_into_24_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        assert_eq!(
            std::mem::size_of::<crate::keyspace::slot::Entry>(),
            48,
            "an entry must fit jemalloc's 48-byte class"
        );
        for n in [0usize, 18, 19, 200] {
            let v: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut k = Key::new(&v, 7);
            assert_eq!(k.as_slice(), &v[..]);
            assert_eq!(k.meta(), 7);
            *k.meta_mut() = 9;
            assert_eq!(k.meta(), 9);
        }
    }
}
