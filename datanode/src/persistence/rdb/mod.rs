//! Redis's RDB serialization (version 10, Redis 7.0): the object encoding
//! used by DUMP/RESTORE (and, later, RDB files).

pub mod crc64;
pub mod file;
pub mod listpack;
pub mod lzf;
pub mod object;
