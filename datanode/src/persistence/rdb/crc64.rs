//! CRC-64/Jones, the checksum of RDB files and DUMP payloads: reflected
//! polynomial 0xad93d23594c935a9, initial value 0, no final xor.

const fn table() -> [u64; 256] {
    // Reflected form of the polynomial, for the LSB-first algorithm.
    let poly: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// Continues a CRC over more bytes.
pub fn update(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = TABLE[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

pub fn crc64(data: &[u8]) -> u64 {
    update(0, data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        assert_eq!(super::crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let (a, b) = b"123456789".split_at(4);
        assert_eq!(super::update(super::crc64(a), b), 0xe9c6_d914_c4b8_d9ca);
    }
}
