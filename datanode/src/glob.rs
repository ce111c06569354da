//! Glob-style matching with the rules of Redis's KEYS, SCAN MATCH and
//! CONFIG GET: `*`, `?`, `[set]`, `[^set]`, `[a-z]`, and `\` escapes.
//!
//! Matching keeps a single backtrack point (the last `*`), so it runs in
//! O(pattern × string) even for patterns like `a*a*a*…b`, where naive
//! recursion goes exponential.

/// Matches one non-`*` token of `p` at `pi` against byte `c`; returns
/// whether it matched and where the next token starts.
fn token(p: &[u8], pi: usize, c: u8, nocase: bool) -> (bool, usize) {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match p[pi] {
        b'?' => (true, pi + 1),
        b'\\' if pi + 1 < p.len() => (eq(p[pi + 1], c), pi + 2),
        b'[' => {
            let mut i = pi + 1;
            let not = i < p.len() && p[i] == b'^';
            if not {
                i += 1;
            }
            let mut hit = false;
            loop {
                if i >= p.len() {
                    // An unterminated set ends with the pattern.
                    break;
                }
                if p[i] == b']' {
                    i += 1;
                    break;
                }
                if p[i] == b'\\' && i + 1 < p.len() {
                    hit |= eq(p[i + 1], c);
                    i += 2;
                } else if i + 2 < p.len() && p[i + 1] == b'-' {
                    let (mut lo, mut hi) = (p[i], p[i + 2]);
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    let (cl, lol, hil) = if nocase {
                        (
                            c.to_ascii_lowercase(),
                            lo.to_ascii_lowercase(),
                            hi.to_ascii_lowercase(),
                        )
                    } else {
                        (c, lo, hi)
                    };
                    hit |= cl >= lol && cl <= hil;
                    i += 3;
                } else {
                    hit |= eq(p[i], c);
                    i += 1;
                }
            }
            (hit != not, i)
        }
        lit => (eq(lit, c), pi + 1),
    }
}

pub fn glob_match(p: &[u8], s: &[u8], nocase: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // Position after the last `*` seen, and the string index it resumes at.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            while pi < p.len() && p[pi] == b'*' {
                pi += 1;
            }
            if pi == p.len() {
                return true;
            }
            star = Some((pi, si));
            continue;
        }
        if pi < p.len() {
            let (ok, next) = token(p, pi, s[si], nocase);
            if ok {
                pi = next;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;
    use proptest::prelude::*;

    #[test]
    fn redis_glob_rules() {
        assert!(m(b"*", b"anything", false));
        assert!(m(b"*", b"", false));
        assert!(m(b"h?llo", b"hello", false));
        assert!(!m(b"h?llo", b"hllo", false));
        assert!(m(b"h*llo", b"heeeello", false));
        assert!(m(b"h[ae]llo", b"hallo", false));
        assert!(!m(b"h[ae]llo", b"hillo", false));
        assert!(m(b"h[^e]llo", b"hallo", false));
        assert!(!m(b"h[^e]llo", b"hello", false));
        assert!(m(b"h[a-b]llo", b"hbllo", false));
        assert!(m(b"h[b-a]llo", b"hallo", false));
        assert!(m(b"[a-c]", b"a", false));
        assert!(!m(b"[a-c]", b"d", false));
        assert!(m(b"a\\*b", b"a*b", false));
        assert!(!m(b"a\\*b", b"axb", false));
        assert!(m(b"HELLO", b"hello", true));
        assert!(!m(b"HELLO", b"hello", false));
        assert!(m(b"*o*", b"foo", false));
        assert!(m(b"[abc", b"a", false));
        assert!(m(b"a*b*c", b"aXXbYYc", false));
        assert!(!m(b"a*b*c", b"aXXbYY", false));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let p = b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let s = vec![b'a'; 10_000];
        let t = std::time::Instant::now();
        assert!(!m(p, &s, false));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn never_panics(p in proptest::collection::vec(any::<u8>(), 0..32),
                        s in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = m(&p, &s, false);
            let _ = m(&p, &s, true);
        }

        #[test]
        fn literal_patterns_match_themselves(s in "[a-z0-9:]{0,20}") {
            prop_assert!(m(s.as_bytes(), s.as_bytes(), false));
        }
    }
}
