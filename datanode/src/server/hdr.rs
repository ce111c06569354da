//! The bucket layout of the HDR histograms Redis keeps per command for
//! `INFO latencystats`: values from 1 ns to 1 s at two significant digits
//! (Redis's LATENCY_HISTOGRAM_MIN_VALUE, _MAX_VALUE and _PRECISION), so
//! that percentiles read back as the same bucket bounds redis-server
//! prints (a 1 µs call shows as 1.003, one of 17 µs as 17.023).
//!
//! Only the layout lives here: the counts are plain slices, kept and
//! summed by `cmdstats`.

/// Lowest and highest trackable values, in nanoseconds.
pub const MIN: u64 = 1;
pub const MAX: u64 = 1_000_000_000;

// Two significant digits need single-unit resolution up to 2 * 10^2 =
// 200, so a bucket has 256 sub-buckets, of which the upper 128 are new
// in every bucket after the first; 23 buckets reach 10^9.
const SUB_BUCKET_COUNT_MAGNITUDE: u32 = 8;
const SUB_BUCKET_COUNT: u64 = 1 << SUB_BUCKET_COUNT_MAGNITUDE;
const SUB_BUCKET_HALF_COUNT_MAGNITUDE: u32 = SUB_BUCKET_COUNT_MAGNITUDE - 1;
const SUB_BUCKET_HALF_COUNT: u64 = 1 << SUB_BUCKET_HALF_COUNT_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = SUB_BUCKET_COUNT - 1;
const BUCKET_COUNT: usize = 23;

/// Number of counters a histogram has.
pub const LEN: usize = (BUCKET_COUNT + 1) * SUB_BUCKET_HALF_COUNT as usize;

fn bucket_of(v: u64) -> u32 {
    let pow2ceiling = 64 - (v | SUB_BUCKET_MASK).leading_zeros();
    pow2ceiling - (SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1)
}

/// The counter a value (clamped to MIN..=MAX) is counted in.
pub fn index_of(v: u64) -> usize {
    let v = v.clamp(MIN, MAX);
    let b = bucket_of(v);
    let sub = v >> b;
    (((b + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) as u64 + sub - SUB_BUCKET_HALF_COUNT) as usize
}

/// The lowest value counted in counter `i`.
fn value_at(i: usize) -> u64 {
    let i = i as u64;
    let mut b = (i >> SUB_BUCKET_HALF_COUNT_MAGNITUDE) as i64 - 1;
    let mut sub = (i & (SUB_BUCKET_HALF_COUNT - 1)) + SUB_BUCKET_HALF_COUNT;
    if b < 0 {
        sub -= SUB_BUCKET_HALF_COUNT;
        b = 0;
    }
    sub << b
}

fn lowest_equivalent(v: u64) -> u64 {
    let b = bucket_of(v);
    (v >> b) << b
}

fn highest_equivalent(v: u64) -> u64 {
    let b = bucket_of(v);
    let sub = v >> b;
    let size = if sub >= SUB_BUCKET_COUNT {
        2u64 << b
    } else {
        1u64 << b
    };
    lowest_equivalent(v) + size - 1
}

/// The value at `percentile` (0 to 100) of the counts, as hdr_histogram's
/// hdr_value_at_percentile gives it: the highest value of the counter that
/// holds that rank (the lowest, for percentile 0).
pub fn value_at_percentile(counts: &[u64], percentile: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    let p = percentile.min(100.0);
    let rank = (((p / 100.0) * total as f64) + 0.5) as u64;
    let rank = rank.max(1);
    let mut seen = 0u64;
    let mut v = 0;
    for (i, &n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            v = value_at(i);
            break;
        }
    }
    if percentile == 0.0 {
        lowest_equivalent(v)
    } else {
        highest_equivalent(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: u64) -> Vec<u64> {
        let mut c = vec![0u64; LEN];
        c[index_of(v)] += 1;
        c
    }

    #[test]
    fn values_read_back_as_redis_prints_them() {
        // Figures from redis-server 7.0's INFO latencystats (ns / 1000).
        assert_eq!(value_at_percentile(&one(0), 50.0), 1);
        assert_eq!(value_at_percentile(&one(1000), 50.0), 1003);
        assert_eq!(value_at_percentile(&one(17_000), 99.9), 17_023);
        assert_eq!(value_at_percentile(&one(45_000), 50.0), 45_055);
        assert_eq!(value_at_percentile(&one(141_000), 99.0), 141_311);
        assert_eq!(value_at_percentile(&one(22_000), 50.0), 22_015);
        // Beyond the top, the last bucket.
        assert!(value_at_percentile(&one(u64::MAX), 50.0) >= MAX);
        assert!(index_of(u64::MAX) < LEN);
    }

    #[test]
    fn percentiles_pick_the_rank() {
        let mut c = vec![0u64; LEN];
        for v in [1000u64, 2000, 3000, 4000, 100_000] {
            c[index_of(v)] += 1;
        }
        assert_eq!(value_at_percentile(&c, 0.0), 1000);
        assert_eq!(value_at_percentile(&c, 50.0), 3007);
        assert_eq!(value_at_percentile(&c, 100.0), 100_351);
        // An empty histogram reads 0, as hdr_histogram's does.
        assert_eq!(value_at_percentile(&vec![0u64; LEN], 50.0), 0);
    }

    #[test]
    fn every_value_lands_within_its_counter_bounds() {
        let mut v = 1u64;
        while v <= MAX {
            let i = index_of(v);
            assert!(i < LEN);
            assert!(value_at(i) <= v, "{v}");
            assert!(highest_equivalent(value_at(i)) >= v, "{v}");
            v = v * 3 / 2 + 1;
        }
    }
}
