//! Used-memory accounting for `maxmemory`.
//!
//! The binary's allocator is wrapped in [`CountingJemalloc`], which adds the
//! jemalloc size class of every allocation to a counter and subtracts it on
//! free, as Redis's zmalloc does. Chosen over jemalloc's `stats.allocated`
//! because that needs an `epoch` refresh (a walk over every arena) to move,
//! counts frees parked in thread caches as still allocated, and so cannot
//! tell an eviction loop whether the key it just dropped brought it under
//! the limit. The counter is split in cache-line-sized shards picked per
//! thread, so threads do not bounce one line on every allocation; reading
//! it sums the shards. [`used_recent`] caches that sum for a millisecond
//! for the per-command check.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 16;

#[repr(align(128))]
struct Shard(AtomicI64);

static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicI64::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
/// Whether the counting allocator is installed (not in unit tests).
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    // Const-initialised and without a destructor: safe to read from inside
    // the allocator, even while the thread is being torn down.
    static MY_SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

#[inline]
fn shard() -> &'static AtomicI64 {
    let i = MY_SHARD
        .try_with(|m| {
            let v = m.get();
            if v != usize::MAX {
                return v;
            }
            let v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            m.set(v);
            v
        })
        .unwrap_or(0);
    &COUNTS[i].0
}

/// Bytes currently allocated through the counting allocator.
pub fn used() -> u64 {
    let sum: i64 = COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    sum.max(0) as u64
}

/// Whether [`used`] means anything (the binary installed the allocator).
pub fn counting() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

static CACHED_AT: AtomicI64 = AtomicI64::new(i64::MIN);
static CACHED: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

/// [`used`] as of the current millisecond: the check before every command
/// reads two atomics instead of summing the shards.
pub fn used_recent(now_ms: i64) -> u64 {
    if CACHED_AT.load(Ordering::Relaxed) == now_ms {
        return CACHED.load(Ordering::Relaxed);
    }
    let v = used();
    CACHED.store(v, Ordering::Relaxed);
    CACHED_AT.store(now_ms, Ordering::Relaxed);
    PEAK.fetch_max(v, Ordering::Relaxed);
    v
}

/// Forgets the cached value: a write just ran, and the next command's
/// check must see what it allocated (as Redis's per-command check does),
/// even within the same millisecond.
pub fn forget_recent() {
    CACHED_AT.store(i64::MIN, Ordering::Relaxed);
}

/// Replaces the cached value with one just read by [`used`] (after an
/// eviction freed memory).
pub fn set_recent(now_ms: i64, v: u64) {
    CACHED.store(v, Ordering::Relaxed);
    CACHED_AT.store(now_ms, Ordering::Relaxed);
}

/// The highest value seen by [`used_recent`] or [`peak_update`].
pub fn peak() -> u64 {
    PEAK.load(Ordering::Relaxed)
}

pub fn peak_update(v: u64) {
    PEAK.fetch_max(v, Ordering::Relaxed);
}

#[cfg(not(target_env = "msvc"))]
pub use counting_jemalloc::CountingJemalloc;

/// The size jemalloc would really reserve for `n` bytes (its size class):
/// a buffer grown to that size uses room it pays for anyway. Large classes
/// are a quarter of a power of two apart, so an arbitrary size can waste
/// up to 25%; doubling a class size gives another class.
pub fn alloc_size(n: usize) -> usize {
    #[cfg(not(target_env = "msvc"))]
    {
        counting_jemalloc::class_size(n, 1) as usize
    }
    #[cfg(target_env = "msvc")]
    {
        n
    }
}

/// Types whose all-zero bytes are a valid value.
///
/// # Safety
/// An implementor must be plain data with no invalid bit patterns.
pub unsafe trait Plain: Copy {}
// SAFETY: integers have no invalid bit patterns.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}

#[cfg(target_env = "msvc")]
use std::alloc::System as Uncounted;
#[cfg(not(target_env = "msvc"))]
use tikv_jemallocator::Jemalloc as Uncounted;

/// A zeroed working buffer kept out of the used-memory count: space that
/// Redis takes on its stack (liblzf's 256 KB hash table) and so never
/// counts. Kept per thread, a counted buffer would leave `used_memory`
/// when a pool thread exits (tokio's blocking threads idle out after 10
/// s), so the figure would move with thread lifetimes.
pub struct Scratch<T: Plain> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

impl<T: Plain> Scratch<T> {
    pub fn zeroed(len: usize) -> Self {
        use std::alloc::GlobalAlloc;
        let layout = Self::layout(len);
        if layout.size() == 0 {
            return Scratch {
                ptr: std::ptr::NonNull::dangling(),
                len,
            };
        }
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { Uncounted.alloc_zeroed(layout) };
        match std::ptr::NonNull::new(p.cast::<T>()) {
            Some(ptr) => Scratch { ptr, len },
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    fn layout(len: usize) -> std::alloc::Layout {
        match std::alloc::Layout::array::<T>(len) {
            Ok(l) => l,
            // Only for lengths no machine could hold.
            Err(_) => std::alloc::handle_alloc_error(std::alloc::Layout::new::<T>()),
        }
    }
}

impl<T: Plain> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` zero-initialised (valid, see Plain) Ts.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> Drop for Scratch<T> {
    fn drop(&mut self) {
        use std::alloc::GlobalAlloc;
        let layout = Self::layout(self.len);
        if layout.size() > 0 {
            // SAFETY: allocated in `zeroed` with this same layout.
            unsafe { Uncounted.dealloc(self.ptr.as_ptr().cast(), layout) }
        }
    }
}

#[cfg(not(target_env = "msvc"))]
mod counting_jemalloc {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::Ordering;

    use super::{shard, INSTALLED};

    /// jemalloc, counting what it hands out (see the module docs).
    pub struct CountingJemalloc;

    /// The bytes jemalloc really reserves for `layout` (its size class),
    /// with the same flags `tikv_jemallocator` passes.
    #[inline]
    pub(super) fn class_size(size: usize, align: usize) -> i64 {
        const MAX_ALIGN: usize = 16;
        let flags = if align <= MAX_ALIGN && align <= size {
            0
        } else {
            tikv_jemalloc_sys::MALLOCX_ALIGN(align)
        };
        // SAFETY: nallocx only computes a size; any size is accepted.
        let n = unsafe { tikv_jemalloc_sys::nallocx(size.max(1), flags) };
        n as i64
    }

    #[inline]
    fn add(n: i64) {
        shard().fetch_add(n, Ordering::Relaxed);
    }

    // SAFETY: every call is forwarded unchanged to jemalloc; only counters
    // are updated around it.
    unsafe impl GlobalAlloc for CountingJemalloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = tikv_jemallocator::Jemalloc.alloc(layout);
            if !p.is_null() {
                add(class_size(layout.size(), layout.align()));
            }
            p
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = tikv_jemallocator::Jemalloc.alloc_zeroed(layout);
            if !p.is_null() {
                add(class_size(layout.size(), layout.align()));
            }
            p
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-class_size(layout.size(), layout.align()));
            tikv_jemallocator::Jemalloc.dealloc(ptr, layout)
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = tikv_jemallocator::Jemalloc.realloc(ptr, layout, new_size);
            if !p.is_null() {
                add(class_size(new_size, layout.align())
                    - class_size(layout.size(), layout.align()));
            }
            p
        }
    }

    impl CountingJemalloc {
        /// Called once by the binary that installs this allocator.
        pub fn mark_installed() {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(not(target_env = "msvc"))]
    fn alloc_size_is_a_jemalloc_class_and_doubling_keeps_it_one() {
        use super::alloc_size;
        // Large classes are four per power of two: 16.9 MB takes 20 MB.
        assert_eq!(alloc_size(16_941_696), 20 << 20);
        assert_eq!(alloc_size(16 << 10), 16 << 10);
        for n in [100_010usize, 1_234_567, 6_400_640] {
            let c = alloc_size(n);
            assert!(c >= n && c - n <= n / 4, "{n} -> {c}");
            assert_eq!(alloc_size(c), c);
            assert_eq!(alloc_size(2 * c), 2 * c);
        }
    }

    #[test]
    fn scratch_is_zeroed_writable_and_outside_the_count() {
        let before = super::used();
        let mut s = super::Scratch::<u32>::zeroed(1 << 16);
        assert_eq!(s.len(), 1 << 16);
        assert!(s.iter().all(|&x| x == 0));
        s[65535] = 7;
        assert_eq!(s[65535], 7);
        // Unit tests run without the counting allocator, so this checks
        // only that the scratch itself adds nothing.
        assert_eq!(super::used(), before);
        let empty = super::Scratch::<u8>::zeroed(0);
        assert!(empty.is_empty());
    }

    #[test]
    fn sharded_sum_adds_up() {
        let before = super::used();
        super::shard().fetch_add(1000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(super::used(), before + 1000);
        super::shard().fetch_add(-1000, std::sync::atomic::Ordering::Relaxed);
    }
}
