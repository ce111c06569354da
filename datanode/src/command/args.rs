//! Command arguments: byte ranges over a buffer (the connection's read
//! buffer, or the owned copy of a command queued by MULTI).

use std::ops::Range;

#[derive(Clone, Copy)]
pub struct Args<'a> {
    base: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn new(base: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Args { base, ranges }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.base[self.ranges[i].clone()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.ranges.iter().map(|r| &self.base[r.clone()])
    }

    /// The arguments from `from` on (ACL DRYRUN's command inside its own).
    pub fn slice_from(&self, from: usize) -> Args<'a> {
        Args {
            base: self.base,
            ranges: &self.ranges[from.min(self.ranges.len())..],
        }
    }

    /// Copies the arguments out, for queuing.
    pub fn to_owned(&self) -> OwnedArgs {
        let mut buf = Vec::with_capacity(self.ranges.iter().map(|r| r.len()).sum());
        let mut ranges = Vec::with_capacity(self.len());
        for a in self.iter() {
            let s = buf.len();
            buf.extend_from_slice(a);
            ranges.push(s..buf.len());
        }
        OwnedArgs { buf, ranges }
    }
}

impl std::ops::Index<usize> for Args<'_> {
    type Output = [u8];
    fn index(&self, i: usize) -> &[u8] {
        self.get(i)
    }
}

/// A command's arguments copied out of the read buffer.
#[derive(Clone, Debug, Default)]
pub struct OwnedArgs {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl OwnedArgs {
    pub fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.ranges)
    }

    pub fn parts(&self) -> (&[u8], &[Range<usize>]) {
        (&self.buf, &self.ranges)
    }

    pub fn from_slices<A: AsRef<[u8]>>(items: &[A]) -> OwnedArgs {
        let mut o = OwnedArgs::default();
        for a in items {
            let s = o.buf.len();
            o.buf.extend_from_slice(a.as_ref());
            o.ranges.push(s..o.buf.len());
        }
        o
    }
}

/// ASCII case-insensitive comparison with an upper- or lower-case literal.
#[inline]
pub fn eq_ic(a: &[u8], lit: &str) -> bool {
    a.eq_ignore_ascii_case(lit.as_bytes())
}
