//! The 48-bit linear congruential generator behind Redis's `math.random`
//! (POSIX drand48's constants), so a seeded script draws the same numbers
//! as on redis-server. One sequence for the whole process, as in Redis.

use parking_lot::Mutex;

const A: u64 = 0x5_DEEC_E66D;
const C: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;
/// Redis's initial state (X2, X1, X0 = 0x1234, 0xABCD, 0x330E).
const INITIAL: u64 = 0x1234_ABCD_330E;
/// REDIS_LRAND48_MAX: INT32_MAX.
pub const MAX: i64 = i32::MAX as i64;

static STATE: Mutex<u64> = Mutex::new(INITIAL);

/// The next value in 0..2^31.
pub fn next() -> i64 {
    let mut s = STATE.lock();
    *s = (s.wrapping_mul(A).wrapping_add(C)) & MASK;
    (*s >> 17) as i64
}

/// `math.randomseed(n)`: the low 32 bits of `n` become the high state bits.
pub fn seed(n: i32) {
    *STATE.lock() = (((n as u32 as u64) << 16) | 0x330E) & MASK;
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_c_library_lrand48() {
        for seed in [0i32, 42, -7, i32::MAX] {
            super::seed(seed);
            // SAFETY: srand48/lrand48 only touch libc's own generator state.
            unsafe { libc::srand48(seed as libc::c_long) };
            for _ in 0..5 {
                let ours = super::next();
                let theirs = unsafe { libc::lrand48() } as i64;
                assert_eq!(ours, theirs, "seed {seed}");
            }
        }
    }
}
