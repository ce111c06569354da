//! RDB files: truncated or corrupted ones must be refused without a panic.
//! Inputs are tried as they are and behind a valid header with an EOF and
//! a zero (unchecked) checksum appended, so the loader's body is reached.
#![no_main]

use std::sync::{Arc, OnceLock};

use datanode::keyspace::Keyspace;
use datanode::persistence::{effects::EffectLog, rdb::file};
use libfuzzer_sys::fuzz_target;

fn keyspace() -> &'static Keyspace {
    // One keyspace for the whole run: building 16 databases per input
    // would dominate. Loads only add keys, which is harmless here.
    static KS: OnceLock<Keyspace> = OnceLock::new();
    KS.get_or_init(|| Keyspace::new(16, Arc::new(EffectLog::default())))
}

fuzz_target!(|data: &[u8]| {
    let ks = keyspace();
    let _ = file::load(ks, data, 0);
    let mut f = b"REDIS0010".to_vec();
    f.extend_from_slice(data);
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    let _ = file::load(ks, &f, 0);
});
