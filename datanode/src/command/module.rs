//! MODULE: datanode loads no Redis modules (they are C shared objects
//! written against redis-server's internals), so LIST is always empty and
//! LOAD, LOADEX and UNLOAD are refused, after the same protection check
//! redis-server makes (`enable-module-command`).

use super::{Args, Ctx};

fn allowed(ctx: &Ctx) -> bool {
    let mode = ctx
        .srv
        .config
        .read()
        .value("enable-module-command")
        .to_string();
    match mode.as_str() {
        "yes" => true,
        "local" => ctx.client.info.addr.is_local(),
        _ => false,
    }
}

/// Replies the protection error and returns false when MODULE's changing
/// subcommands are not allowed on this connection.
fn check(ctx: &mut Ctx) -> bool {
    if !allowed(ctx) {
        ctx.r.error("ERR MODULE command not allowed. If the enable-module-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.");
        return false;
    }
    true
}

pub fn list(ctx: &mut Ctx, _a: &Args) {
    ctx.r.array(0);
}

pub fn load(ctx: &mut Ctx, a: &Args) {
    if !check(ctx) {
        return;
    }
    tracing::warn!(
        "MODULE {} {}: datanode does not load Redis modules",
        String::from_utf8_lossy(a.get(1)),
        String::from_utf8_lossy(a.get(2))
    );
    ctx.r
        .error("ERR Error loading the extension. Please check the server logs.");
}

pub fn unload(ctx: &mut Ctx, _a: &Args) {
    if !check(ctx) {
        return;
    }
    ctx.r
        .error("ERR Error unloading module: no such module with that name");
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "MODULE",
        &[
            "LIST",
            "    The loaded modules (always none: datanode does not load modules).",
            "LOAD <path> [<arg> ...]",
            "    Refused: datanode does not load modules.",
            "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
            "    Refused: datanode does not load modules.",
            "UNLOAD <name>",
            "    Refused: no module is loaded.",
        ],
    );
}
