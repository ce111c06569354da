//! Redis's RDB serialization (version 10, Redis 7.0): the object encoding
//! used by DUMP/RESTORE (and, later, RDB files).

/// `key-load-delay` and `rdb-key-save-delay`: test-only pauses per key
/// (microseconds), so Redis's suite can catch a load or save in progress.
pub static KEY_LOAD_DELAY: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
pub static KEY_SAVE_DELAY: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Bytes of the file being loaded read so far (INFO's
/// `loading_loaded_bytes`), moved by the loaders key by key.
pub static LOADED_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The `used-mem` aux field of the RDB being loaded (INFO's
/// `loading_rdb_used_mem`): the saving server's memory, Redis's estimate
/// of a streamed file's size when its length is unknown.
pub static RDB_USED_MEM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// DEBUG SET-SKIP-CHECKSUM-VALIDATION: RESTORE, FUNCTION RESTORE and
/// loading an RDB take a payload whatever its CRC-64 says (its version
/// is still checked), as Redis's tests use to feed corrupt bodies.
pub static SKIP_CHECKSUM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a DUMP-style payload's stored CRC-64 (its last 8 bytes) is to
/// be taken as right: it matches, or checks are skipped.
pub fn payload_crc_ok(p: &[u8]) -> bool {
    if SKIP_CHECKSUM.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    let Some(body) = p.len().checked_sub(8) else {
        return false;
    };
    crc64::crc64(&p[..body]).to_le_bytes() == p[body..]
}

/// Sleeps the configured per-key delay, if any.
pub fn key_delay(d: &std::sync::atomic::AtomicI64) {
    let us = d.load(std::sync::atomic::Ordering::Relaxed);
    if us > 0 {
        std::thread::sleep(std::time::Duration::from_micros(us as u64));
    }
}

/// `rdb-key-save-delay` for a snapshot's sweep: the pause of each key of a
/// slot just snapshotted, taken outside its lock so writers are not held
/// up (BGSAVE and the AOF rewrite, as Redis pauses in both). Between
/// pauses `go_on` may stop it (the snapshot is no longer wanted): false.
pub fn slot_save_delay(
    db: &crate::keyspace::Db,
    slot: u16,
    mut go_on: impl FnMut() -> bool,
) -> bool {
    for _ in 0..db.slot_keys(slot) {
        let us = KEY_SAVE_DELAY.load(std::sync::atomic::Ordering::Relaxed);
        if us <= 0 {
            break;
        }
        // In steps: a snapshot no one wants stops within one, as Redis's
        // child dies at once when killed.
        let mut left = std::time::Duration::from_micros(us as u64);
        while !left.is_zero() {
            let step = left.min(std::time::Duration::from_millis(10));
            std::thread::sleep(step);
            left -= step;
            if !go_on() {
                return false;
            }
        }
    }
    true
}

pub mod crc64;
pub mod file;
pub mod listpack;
pub mod lzf;
pub mod object;
