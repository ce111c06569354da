//! Persistence: the effect log and the append-only file.

pub mod aof;
pub mod effects;
pub mod rdb;
pub mod rewrite;
