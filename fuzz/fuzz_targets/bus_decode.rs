//! Any bytes fed to the cluster bus framing and decoder: no panic, and a
//! decoded message re-encodes to one that decodes the same.
#![no_main]

use datanode::cluster::bus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Frame the stream as a link would.
    let mut rest = data;
    while let Ok(Some(len)) = bus::frame_len(rest) {
        if rest.len() < len {
            break;
        }
        if let Ok(m) = bus::decode(&rest[..len]) {
            let mut again = Vec::new();
            bus::encode(&m, &mut again);
            let m2 = bus::decode(&again).expect("re-encoded frame decodes");
            assert_eq!(m2.body, m.body.known_part());
        }
        rest = &rest[len..];
    }
    // The decoder alone, on a frame whose length field is patched to fit.
    if data.len() >= 8 {
        let mut f = data.to_vec();
        f[0..4].copy_from_slice(b"RCmb");
        let n = f.len() as u32;
        f[4..8].copy_from_slice(&n.to_be_bytes());
        let _ = bus::decode(&f);
    }
});
