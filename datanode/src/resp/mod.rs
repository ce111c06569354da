//! RESP2/RESP3 wire format: request parsing and reply encoding.

pub mod parse;
pub mod reply;

pub use parse::{parse_i64, parse_request, Limits, Parsed, ProtocolError};
pub use reply::{Proto, Reply};
