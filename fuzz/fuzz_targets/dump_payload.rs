//! RESTORE payloads come from clients: any bytes must be refused or
//! decoded without a panic. Payloads get a valid footer half the time so
//! the decoder behind the checksum is reached.
#![no_main]

use datanode::persistence::rdb::{crc64::crc64, object::undump};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = undump(data);
    if let Some((&flag, body)) = data.split_first() {
        if flag & 1 == 0 {
            let mut p = body.to_vec();
            p.extend_from_slice(&10u16.to_le_bytes());
            let crc = crc64(&p);
            p.extend_from_slice(&crc.to_le_bytes());
            let _ = undump(&p);
        }
    }
});
