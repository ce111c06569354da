//! RESP2/RESP3 wire format: request parsing and reply encoding.

pub mod reply;

pub use reply::{Proto, Reply};
