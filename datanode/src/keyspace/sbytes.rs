//! `SBytes`: a fixed-length byte string that keeps up to 22 bytes inline,
//! so most keys and small values cost no allocation of their own.

use std::fmt;

const INLINE: usize = 22;

#[derive(Clone)]
pub enum SBytes {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

/// From this size on, a new value's pages are mapped in one call before
/// the copy: a fresh 1 MB value otherwise takes 256 page faults, which
/// cost more than the copy itself.
const PREFAULT_MIN: usize = 64 * 1024;

#[cfg(target_os = "linux")]
fn prefault(p: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    let start = (p as usize).div_ceil(PAGE) * PAGE;
    let end = (p as usize + len) / PAGE * PAGE;
    if end > start {
        // SAFETY: the range lies inside an allocation we own; populating
        // pages changes no contents. Failure (old kernels) is harmless.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn prefault(_p: *mut u8, _len: usize) {}

impl SBytes {
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            SBytes::Inline {
                len: b.len() as u8,
                data,
            }
        } else if b.len() >= PREFAULT_MIN {
            let mut v = Vec::with_capacity(b.len());
            prefault(v.as_mut_ptr(), b.len());
            v.extend_from_slice(b);
            SBytes::Heap(v.into_boxed_slice())
        } else {
            SBytes::Heap(b.into())
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        if v.len() <= INLINE {
            Self::new(&v)
        } else {
            SBytes::Heap(v.into_boxed_slice())
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SBytes::Inline { len, data } => &data[..*len as usize],
            SBytes::Heap(b) => b,
        }
    }

    /// The bytes, writable in place; the length stays.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            SBytes::Inline { len, data } => &mut data[..*len as usize],
            SBytes::Heap(b) => b,
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(self, SBytes::Inline { .. })
    }

    /// Heap bytes owned beyond the struct itself.
    pub fn heap_size(&self) -> usize {
        match self {
            SBytes::Inline { .. } => 0,
            SBytes::Heap(b) => b.len(),
        }
    }
}

impl std::ops::Deref for SBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for SBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for SBytes {}

impl std::hash::Hash for SBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for SBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for SBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_round_trip() {
        assert_eq!(std::mem::size_of::<SBytes>(), 24);
        for n in [0usize, 1, 22, 23, 100] {
            let v: Vec<u8> = (0..n as u8).collect();
            let s = SBytes::new(&v);
            assert_eq!(s.as_slice(), &v[..]);
            assert_eq!(s.is_inline(), n <= INLINE);
            assert_eq!(SBytes::from_vec(v.clone()).as_slice(), &v[..]);
        }
    }
}
