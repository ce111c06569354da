//! Any bytes as client requests: the parser never panics and every range
//! it returns lies inside the buffer it points into.
#![no_main]

use datanode::resp::{parse_request, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let mut at = 0;
    while at < data.len() {
        match parse_request(&data[at..], &limits, &mut ranges, &mut scratch) {
            Ok(Some(p)) => {
                let (consumed, base_len) = match p {
                    Parsed::Multibulk { consumed } => (consumed, data.len() - at),
                    Parsed::Inline { consumed } => (consumed, scratch.len()),
                    Parsed::Empty { consumed } => (consumed, usize::MAX),
                };
                assert!(consumed > 0 && consumed <= data.len() - at);
                for r in &ranges {
                    assert!(r.start <= r.end && r.end <= base_len);
                }
                at += consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
