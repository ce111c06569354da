//! A command from our master's stream or from the AOF that fails here:
//! the two copies of the data may now differ. As Redis does, it is logged
//! as critical and counted (INFO unexpected_error_replies), and
//! `propagation-error-behavior` may ask for the process to stop rather
//! than go on with diverged data.

use super::shared::Shared;
use super::stats::Stats;

/// Where a command came from that was expected to succeed.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    Master,
    Aof,
    /// A replica's link that ran a command with an error reply.
    Replica,
}

/// Redis logs at most this much of the error.
const SHOWN: usize = 4096;

/// Called with the reply a `source` command got when it is an error.
pub fn error_reply(srv: &Shared, source: Source, reply: &[u8], cmd: &str) {
    // As Redis logs the text it was given: a plain message (the reply's
    // "ERR " is added after) bare, an error with its own code whole.
    let msg = reply
        .strip_prefix(b"-ERR ")
        .unwrap_or(reply)
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&msg[..msg.len().min(SHOWN)]);
    let (from, to) = match source {
        Source::Master => ("replica", "master"),
        Source::Aof => ("server", "AOF-loading-client"),
        Source::Replica => ("master", "replica"),
    };
    tracing::warn!(
        "== CRITICAL == This {from} is sending an error to its {to}: '{msg}' after processing the command '{cmd}'"
    );
    Stats::add(&srv.stats.unexpected_error_replies, 1);
    let stop = {
        let cfg = srv.config.read();
        let behavior = cfg.value("propagation-error-behavior");
        match source {
            Source::Master => {
                cfg.flag("replica-read-only") && matches!(behavior, "panic" | "panic-on-replicas")
            }
            Source::Aof => behavior == "panic",
            Source::Replica => false,
        }
    };
    if stop {
        // What propagation-error-behavior asks for: no going on with data
        // that differs from its source.
        crate::crashlog::server_panic(&format!(
            "This {from} panicked sending an error to its {to} after processing the command '{cmd}'"
        ));
    }
}
