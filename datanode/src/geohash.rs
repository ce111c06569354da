//! Geohash arithmetic as Redis's geo commands use it: 52-bit interleaved
//! scores over latitudes ±85.05112878 (the Web Mercator limit), the nine
//! boxes a search scans, and the haversine distances it filters with.
//! The steps and constants follow Redis so that results, their order and
//! every printed digit agree.

pub const LAT_MIN: f64 = -85.051_128_78;
pub const LAT_MAX: f64 = 85.051_128_78;
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;
pub const STEP_MAX: u8 = 26;

const D_R: f64 = std::f64::consts::PI / 180.0;
const EARTH_RADIUS_IN_METERS: f64 = 6_372_797.560_856;
const MERCATOR_MAX: f64 = 20_037_726.37;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hash {
    pub bits: u64,
    pub step: u8,
}

impl Hash {
    fn is_zero(&self) -> bool {
        self.bits == 0 && self.step == 0
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Range {
    min: f64,
    max: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Area {
    long: Range,
    lat: Range,
}

const LONG_RANGE: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// Spreads the 32 bits of `x` over the even bits and `y` over the odd.
fn interleave(x: u32, y: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = v as u64;
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        (v | (v << 1)) & 0x5555_5555_5555_5555
    }
    spread(x) | (spread(y) << 1)
}

/// The inverse of [`interleave`]: (even bits, odd bits).
fn deinterleave(v: u64) -> (u32, u32) {
    fn squash(mut v: u64) -> u32 {
        v &= 0x5555_5555_5555_5555;
        v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
        v = (v | (v >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v >> 4)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v >> 8)) & 0x0000_FFFF_0000_FFFF;
        ((v | (v >> 16)) & 0xFFFF_FFFF) as u32
    }
    (squash(v), squash(v >> 1))
}

fn encode_in(long_r: Range, lat_r: Range, long: f64, lat: f64, step: u8) -> Option<Hash> {
    if step == 0 || step > 32 {
        return None;
    }
    if !(LONG_MIN..=LONG_MAX).contains(&long) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || long < long_r.min || long > long_r.max {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_off = (lat - lat_r.min) / (lat_r.max - lat_r.min) * scale;
    let long_off = (long - long_r.min) / (long_r.max - long_r.min) * scale;
    Some(Hash {
        bits: interleave(lat_off as u32, long_off as u32),
        step,
    })
}

/// The hash of a point in Redis's coordinate ranges.
pub fn encode(long: f64, lat: f64, step: u8) -> Option<Hash> {
    encode_in(LONG_RANGE, LAT_RANGE, long, lat, step)
}

/// The 52-bit score a point gets in the sorted set.
pub fn score_of(long: f64, lat: f64) -> Option<u64> {
    encode(long, lat, STEP_MAX).map(align52)
}

fn align52(h: Hash) -> u64 {
    h.bits << (52 - h.step as u32 * 2)
}

fn decode_in(long_r: Range, lat_r: Range, h: Hash) -> Option<Area> {
    if h.is_zero() {
        return None;
    }
    let (ilat, ilong) = deinterleave(h.bits);
    let scale = (1u64 << h.step) as f64;
    let lat_scale = lat_r.max - lat_r.min;
    let long_scale = long_r.max - long_r.min;
    Some(Area {
        lat: Range {
            min: lat_r.min + (ilat as f64 / scale) * lat_scale,
            max: lat_r.min + ((ilat as u64 + 1) as f64 / scale) * lat_scale,
        },
        long: Range {
            min: long_r.min + (ilong as f64 / scale) * long_scale,
            max: long_r.min + ((ilong as u64 + 1) as f64 / scale) * long_scale,
        },
    })
}

fn decode(h: Hash) -> Option<Area> {
    decode_in(LONG_RANGE, LAT_RANGE, h)
}

/// The point a score stands for (the centre of its cell), as
/// (longitude, latitude).
pub fn decode_score(score: f64) -> Option<(f64, f64)> {
    let area = decode(Hash {
        bits: c_u64(score),
        step: STEP_MAX,
    })?;
    let long = ((area.long.min + area.long.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.lat.min + area.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((long, lat))
}

/// A double cast to u64 as C does it on x86-64 (scores that were not
/// written by GEOADD can be negative or huge).
fn c_u64(d: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    // cvttsd2si: out of range (or NaN) gives the "integer indefinite".
    let cvtt = |x: f64| {
        if x.is_nan() || !(-TWO63..TWO63).contains(&x) {
            i64::MIN
        } else {
            x as i64
        }
    };
    if d < TWO63 {
        cvtt(d) as u64
    } else {
        (cvtt(d - TWO63) as u64) ^ (1 << 63)
    }
}

/// The 11-character standard geohash (latitudes ±90) GEOHASH prints.
pub fn standard_string(long: f64, lat: f64) -> [u8; 11] {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let h = encode_in(
        LONG_RANGE,
        Range {
            min: -90.0,
            max: 90.0,
        },
        long,
        lat,
        STEP_MAX,
    )
    .unwrap_or_default();
    let mut out = [b'0'; 11];
    // 52 bits make ten characters; the eleventh is taken as zero.
    for (i, c) in out.iter_mut().enumerate().take(10) {
        *c = ALPHABET[((h.bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
    }
    out
}

fn move_x(h: &mut Hash, d: i8) {
    if d == 0 {
        return;
    }
    let shift = 64 - h.step as u32 * 2;
    let mut x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> shift;
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    h.bits = x | y;
}

fn move_y(h: &mut Hash, d: i8) {
    if d == 0 {
        return;
    }
    let shift = 64 - h.step as u32 * 2;
    let x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let mut y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> shift;
    h.bits = x | y;
}

fn moved(h: Hash, dx: i8, dy: i8) -> Hash {
    let mut n = h;
    move_x(&mut n, dx);
    move_y(&mut n, dy);
    n
}

/// What a search covers: a circle or a box around a centre.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

#[derive(Clone, Copy, Debug)]
pub struct Search {
    pub long: f64,
    pub lat: f64,
    pub shape: Shape,
    /// Metres per unit of the shape's sizes.
    pub conversion: f64,
}

fn deg_rad(a: f64) -> f64 {
    a * D_R
}

fn rad_deg(a: f64) -> f64 {
    a / D_R
}

fn steps_by_radius(mut range: f64, lat: f64) -> u8 {
    if range == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    // A step coarser, so the range fits in most cases.
    step -= 2;
    // Cells narrow towards the poles.
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

impl Search {
    /// (min long, min lat, max long, max lat) around the centre.
    fn bounds(&self) -> [f64; 4] {
        let (height, width) = match self.shape {
            Shape::Radius(r) => (r * self.conversion, r * self.conversion),
            Shape::Box { width, height } => (
                self.conversion * (height / 2.0),
                self.conversion * (width / 2.0),
            ),
        };
        let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
        let long_delta_top =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat + lat_delta).cos());
        let long_delta_bottom =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(self.lat - lat_delta).cos());
        // The wider edge is the one nearer the equator.
        let delta = if self.lat < 0.0 {
            long_delta_bottom
        } else {
            long_delta_top
        };
        [
            self.long - delta,
            self.lat - lat_delta,
            self.long + delta,
            self.lat + lat_delta,
        ]
    }

    /// The boxes to scan, in Redis's order (centre, N, S, E, W, NE, NW, SE,
    /// SW), with boxes that cannot hold a match left out and a box equal
    /// to the one scanned before it skipped.
    pub fn boxes(&self) -> Vec<Hash> {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let radius = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        } * self.conversion;
        let mut steps = steps_by_radius(radius, self.lat);
        let mut hash = encode(self.long, self.lat, steps).unwrap_or_default();
        let area = |h: Hash| decode(h).unwrap_or_default();
        // Near a cell's edge the estimated step can be too fine for the
        // neighbours to cover the whole shape: one step coarser then.
        let too_small = {
            let (n, s, e, w) = (
                area(moved(hash, 0, 1)),
                area(moved(hash, 0, -1)),
                area(moved(hash, 1, 0)),
                area(moved(hash, -1, 0)),
            );
            n.lat.max < max_lat
                || s.lat.min > min_lat
                || e.long.max < max_lon
                || w.long.min > min_lon
        };
        if steps > 1 && too_small {
            steps -= 1;
            hash = encode(self.long, self.lat, steps).unwrap_or_default();
        }
        let a = area(hash);
        let mut cells = [
            hash,
            moved(hash, 0, 1),
            moved(hash, 0, -1),
            moved(hash, 1, 0),
            moved(hash, -1, 0),
            moved(hash, 1, 1),
            moved(hash, -1, 1),
            moved(hash, 1, -1),
            moved(hash, -1, -1),
        ];
        if steps >= 2 {
            let zero = |cells: &mut [Hash; 9], idx: [usize; 3]| {
                for i in idx {
                    cells[i] = Hash::default();
                }
            };
            if a.lat.min < min_lat {
                zero(&mut cells, [2, 8, 7]);
            }
            if a.lat.max > max_lat {
                zero(&mut cells, [1, 5, 6]);
            }
            if a.long.min < min_lon {
                zero(&mut cells, [4, 8, 6]);
            }
            if a.long.max > max_lon {
                zero(&mut cells, [3, 7, 5]);
            }
        }
        let mut out = Vec::with_capacity(9);
        // Huge radii make neighbours coincide: a box equal to the last one
        // scanned is skipped (as in Redis, never compared to the centre).
        let mut last = 0usize;
        for (i, c) in cells.iter().enumerate() {
            if c.is_zero() || (last > 0 && cells[last] == *c) {
                continue;
            }
            out.push(*c);
            last = i;
        }
        out
    }

    /// The distance to a point (metres) when it lies in the shape.
    pub fn contains(&self, long: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.long, self.lat, long, lat);
                (d <= r * self.conversion).then_some(d)
            }
            Shape::Box { width, height } => {
                let (w, h) = (width * self.conversion, height * self.conversion);
                if lat_distance(lat, self.lat) > h / 2.0 {
                    return None;
                }
                if distance(long, lat, self.long, lat) > w / 2.0 {
                    return None;
                }
                Some(distance(self.long, self.lat, long, lat))
            }
        }
    }
}

/// A search made ready to test many points. For a radius it keeps the
/// centre's cosine, and bounds on the latitude and longitude differences
/// beyond which the haversine distance cannot be within the radius, so
/// most points outside are refused without trigonometry. The bounds are
/// loose by a relative 1e-9, far above the rounding of the distance, so a
/// point is refused only when the full computation would refuse it too:
/// results and distances are those of [`Search::contains`].
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    search: Search,
    long_r: f64,
    lat_r: f64,
    cos_lat: f64,
    /// Largest |Δlatitude| (radians) a match can have.
    max_dlat: f64,
    /// Largest |Δlongitude| (radians, the shorter way round) a match can have.
    max_dlong: f64,
}

/// Relative slack on the bounds, and an absolute one (radians).
const BOUND_SLACK: f64 = 1e-9;
const BOUND_FLOOR: f64 = 1e-12;

impl Search {
    pub fn filter(&self) -> Filter {
        let (lat_r, long_r) = (deg_rad(self.lat), deg_rad(self.long));
        let mut f = Filter {
            search: *self,
            long_r,
            lat_r,
            cos_lat: lat_r.cos(),
            max_dlat: f64::INFINITY,
            max_dlong: f64::INFINITY,
        };
        let Shape::Radius(r) = self.shape else {
            return f;
        };
        // The central angle the radius spans; past half a great circle
        // everything can match.
        let theta = r * self.conversion / EARTH_RADIUS_IN_METERS;
        if !(theta.is_finite() && theta < std::f64::consts::FRAC_PI_2) {
            return f;
        }
        // The distance is at least the latitude difference alone.
        let dlat = theta * (1.0 + BOUND_SLACK) + BOUND_FLOOR;
        f.max_dlat = dlat;
        // hav(d) = hav(Δlat) + cos(lat1)·cos(lat2)·hav(Δlong), and within
        // the latitude band cos(lat2) is at least at the band's poleward
        // edge: so a match has hav(Δlong) ≤ hav(θ) / (cos(lat1)·cos_min).
        let far = (lat_r.abs() + dlat).min(std::f64::consts::FRAC_PI_2);
        let denom = f.cos_lat * far.cos();
        let hav_theta = (theta / 2.0).sin().powi(2);
        if denom > 0.0 {
            let h = hav_theta / denom;
            // asin is ill-conditioned near 1: no bound for wide searches.
            if h < 0.5 {
                f.max_dlong = 2.0 * h.sqrt().asin() * (1.0 + BOUND_SLACK) + BOUND_FLOOR;
            }
        }
        f
    }
}

impl Filter {
    /// As [`Search::contains`].
    pub fn contains(&self, long: f64, lat: f64) -> Option<f64> {
        let Shape::Radius(r) = self.search.shape else {
            return self.search.contains(long, lat);
        };
        let lat2r = deg_rad(lat);
        if (lat2r - self.lat_r).abs() > self.max_dlat {
            return None;
        }
        let lon2r = deg_rad(long);
        let mut dlong = (lon2r - self.long_r).abs();
        if dlong > std::f64::consts::PI {
            dlong = 2.0 * std::f64::consts::PI - dlong;
        }
        if dlong > self.max_dlong {
            return None;
        }
        // `distance` from the centre, with its cosine computed once: the
        // same operations in the same order, so the same bits.
        let v = ((lon2r - self.long_r) / 2.0).sin();
        let d = if v == 0.0 {
            lat_distance(self.search.lat, lat)
        } else {
            let u = ((lat2r - self.lat_r) / 2.0).sin();
            let a = u * u + self.cos_lat * lat2r.cos() * v * v;
            2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
        };
        (d <= r * self.search.conversion).then_some(d)
    }
}

/// The score range [min, max) holding every point of a box.
pub fn score_range(h: Hash) -> (u64, u64) {
    let min = align52(h);
    let max = align52(Hash {
        bits: h.bits + 1,
        step: h.step,
    });
    (min, max)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_IN_METERS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Haversine distance in metres.
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lon1r = deg_rad(lon1);
    let lon2r = deg_rad(lon2);
    let v = ((lon2r - lon1r) / 2.0).sin();
    // Same meridian: the latitude difference alone.
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The filter answers exactly as the plain test: same matches, same
        /// distance bits, near the poles, across the antimeridian, for
        /// radii from metres to continents, and for points just outside.
        #[test]
        fn filter_answers_as_contains(
            clong in -180.0f64..180.0,
            clat in -85.0f64..85.0,
            exp in -1.0f64..7.0,
            pts in proptest::collection::vec((-1.5f64..1.5, -1.5f64..1.5), 1..60),
        ) {
            let r = 10f64.powf(exp);
            let q = Search { long: clong, lat: clat, shape: Shape::Radius(r), conversion: 1.0 };
            let f = q.filter();
            // Points scattered at up to 1.5 radii, in degrees.
            let deg = rad_deg(r / EARTH_RADIUS_IN_METERS);
            for (dx, dy) in pts {
                let mut long = clong + dx * deg / deg_rad(clat).cos().max(0.01);
                if long > 180.0 { long -= 360.0 }
                if long < -180.0 { long += 360.0 }
                let lat = (clat + dy * deg).clamp(LAT_MIN, LAT_MAX);
                let want = q.contains(long, lat).map(f64::to_bits);
                proptest::prop_assert_eq!(f.contains(long, lat).map(f64::to_bits), want);
                // And a point on the boundary's own latitude, where the
                // latitude bound is tight.
                let edge = (clat + deg).clamp(LAT_MIN, LAT_MAX);
                proptest::prop_assert_eq!(
                    f.contains(clong, edge).map(f64::to_bits),
                    q.contains(clong, edge).map(f64::to_bits)
                );
            }
            // Points on the centre's latitude around the radius east and
            // west, where the longitude bound is nearly tight.
            let h = (r / EARTH_RADIUS_IN_METERS / 2.0).sin() / deg_rad(clat).cos();
            if h < 1.0 {
                let span = rad_deg(2.0 * h.asin());
                for k in -3..=3 {
                    for sign in [-1.0, 1.0] {
                        let mut long = clong + sign * span * (1.0 + k as f64 * 1e-7);
                        if long > 180.0 { long -= 360.0 }
                        if long < -180.0 { long += 360.0 }
                        proptest::prop_assert_eq!(
                            f.contains(long, clat).map(f64::to_bits),
                            q.contains(long, clat).map(f64::to_bits)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn interleaving_round_trips() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (0xdead_beef, 0x1234_5678),
            (u32::MAX, 7),
        ] {
            assert_eq!(deinterleave(interleave(x, y)), (x, y));
        }
    }

    #[test]
    fn palermo_scores_as_in_redis_docs() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo"; ZSCORE → 3479099956230698
        assert_eq!(score_of(13.361389, 38.115556), Some(3_479_099_956_230_698));
        let (lon, lat) = decode_score(3_479_099_956_230_698.0).unwrap();
        assert!((lon - 13.361389).abs() < 1e-5 && (lat - 38.115556).abs() < 1e-5);
        assert_eq!(&standard_string(lon, lat), b"sqc8b49rny0");
    }

    #[test]
    fn palermo_catania_distance() {
        let (a, b) = (
            decode_score(3_479_099_956_230_698.0).unwrap(),
            decode_score(3_479_447_370_796_909.0).unwrap(),
        );
        let d = distance(a.0, a.1, b.0, b.1);
        assert!((d - 166_274.151_6).abs() < 0.001, "{d}");
    }
}
