//! CRC-64/Jones ("CRC-64/REDIS" in the catalogue), the checksum of RDB
//! files and DUMP payloads. Sixteen-way tables: it runs over every byte of
//! a snapshot, so a byte-at-a-time loop showed up in SAVE profiles.

use crc::{Crc, Table, CRC_64_REDIS};

static CRC: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

pub fn crc64(data: &[u8]) -> u64 {
    CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        assert_eq!(super::crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }
}
