//! `loglevel`: Redis's four levels onto tracing's (what redis-server logs
//! at LL_VERBOSE is `debug!` here, LL_DEBUG `trace!`), and the way CONFIG
//! SET changes the level of a running server.

use std::sync::OnceLock;

type Setter = Box<dyn Fn(&'static str) + Send + Sync>;

/// Installed by the binary once its subscriber is up; absent when
/// RUST_LOG chose the filter (then that stands).
static SETTER: OnceLock<Setter> = OnceLock::new();

/// The tracing filter for a Redis `loglevel`.
pub fn filter_for(level: &str) -> &'static str {
    match level {
        "debug" => "trace",
        "verbose" => "debug",
        "warning" => "warn",
        _ => "info",
    }
}

/// Registers how to change the filter at run time.
pub fn install(set: impl Fn(&'static str) + Send + Sync + 'static) {
    let _ = SETTER.set(Box::new(set));
}

/// Applies a new `loglevel`.
pub fn set(level: &str) {
    if let Some(f) = SETTER.get() {
        f(filter_for(level));
    }
}
