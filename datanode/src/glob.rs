//! TEMPORARY glob matcher (replaced by the full module).

pub fn glob_match(p: &[u8], s: &[u8], nocase: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob_match(&p[1..], &s[i..], nocase)),
        Some(b'?') => !s.is_empty() && glob_match(&p[1..], &s[1..], nocase),
        Some(b'\\') if p.len() > 1 => {
            !s.is_empty() && eq(p[1], s[0]) && glob_match(&p[2..], &s[1..], nocase)
        }
        Some(&c) => !s.is_empty() && eq(c, s[0]) && glob_match(&p[1..], &s[1..], nocase),
    }
}
