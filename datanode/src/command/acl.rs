//! The ACL command, and the permission check every command passes before
//! it runs (at top level, when EXEC runs it, and inside scripts).

use std::sync::{Arc, OnceLock};

use super::{eq_ic, table, Args, Ctx};
use crate::acl::log::{Context, Entry};
use crate::acl::{selector, Catalog, Denied, Reason, User, CATEGORIES};
use crate::resp::parse_i64;

/// The commands ACL rules can name, from our command table and the
/// categories redis-server 7.0 gives each.
pub fn catalog() -> Arc<Catalog> {
    catalog_arc().clone()
}

fn the_catalog() -> &'static Catalog {
    catalog_arc()
}

fn catalog_arc() -> &'static Arc<Catalog> {
    static CAT: OnceLock<Arc<Catalog>> = OnceLock::new();
    CAT.get_or_init(|| {
        let mut entries = Vec::new();
        for c in table::all() {
            let parent = entries.len();
            entries.push(entry(c, None));
            for s in c.subs {
                entries.push(entry(s, Some(parent)));
            }
        }
        Arc::new(Catalog::new(entries))
    })
}

impl selector::Argv for Args<'_> {
    fn argc(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> &[u8] {
        if i < self.len() {
            self.get(i)
        } else {
            &[]
        }
    }
}

/// Plain key specs (start, lastkey, step, limit, access needed) per
/// catalog id, read from the metadata once; `None` where a command's keys
/// need the full walk.
type Plan = Option<Vec<(i64, i64, i64, i64, u8)>>;

fn plans() -> &'static [Plan] {
    static PLANS: OnceLock<Vec<Plan>> = OnceLock::new();
    PLANS.get_or_init(|| {
        the_catalog()
            .entries
            .iter()
            .map(|e| {
                let info = super::keyspec::info_of(e.name)?;
                let ranges = super::keyspec::simple_ranges(info)?;
                Some(
                    ranges
                        .into_iter()
                        .filter(|r| !r.flags.contains(&"not_key"))
                        .map(|r| (r.start, r.lastkey, r.step, r.limit, need_of(&r.flags)))
                        .collect(),
                )
            })
            .collect()
    })
}

/// The access a key spec's flags ask for: reading for `access`, writing
/// for `insert`, `delete` and `update`.
fn need_of(flags: &[&str]) -> u8 {
    let mut need = 0;
    for f in flags {
        match *f {
            "access" => need |= selector::READ,
            "insert" | "delete" | "update" => need |= selector::WRITE,
            _ => {}
        }
    }
    need
}

fn entry(c: &'static table::Cmd, parent: Option<usize>) -> crate::acl::Entry {
    let mut categories = 0;
    if let Some(super::meta::M::Array(f)) = super::keyspec::info_of(c.name) {
        if let Some(super::meta::M::Set(cats) | super::meta::M::Array(cats)) = f.get(6) {
            for m in cats.iter() {
                if let super::meta::M::Simple(s) | super::meta::M::Bulk(s) = m {
                    if let Some(bit) = s
                        .strip_prefix('@')
                        .and_then(|n| crate::acl::catalog::category_bit(n.as_bytes()))
                    {
                        categories |= bit;
                    }
                }
            }
        }
    }
    crate::acl::Entry {
        name: c.name,
        categories,
        parent,
        no_auth: c.flags & table::flags::NO_AUTH != 0,
    }
}

/// Where a command's channels are: (first argument, only one?, patterns?).
fn channel_spec(name: &str) -> Option<(bool, bool)> {
    match name {
        "subscribe" | "ssubscribe" => Some((false, false)),
        "psubscribe" => Some((false, true)),
        "publish" | "spublish" => Some((true, false)),
        _ => None,
    }
}

/// The keys a command touches and the access each needs, from its key
/// specs: reading for `access`, writing for `insert`, `delete`, `update`.
fn key_needs(cmd: &'static table::Cmd, id: usize, args: &Args) -> Vec<(usize, u8)> {
    if let Some(Some(specs)) = plans().get(id) {
        // As the key-spec walk does it: a range past the arguments makes
        // the command's keys invalid (none are checked).
        let argc = args.len() as i64;
        let mut out = Vec::new();
        for &(start, lastkey, step, limit, need) in specs {
            let last = super::keyspec::range_last(start, lastkey, limit, argc);
            if last < start {
                continue;
            }
            if last >= argc || start < 1 {
                return Vec::new();
            }
            let mut i = start;
            while i <= last {
                out.push((i as usize, need));
                i += step;
            }
        }
        return out;
    }
    let fallback = || cmd.key_indexes(args);
    let Some(info) = super::keyspec::info_of(cmd.name) else {
        return fallback().into_iter().map(|i| (i, 0)).collect();
    };
    if super::keyspec::has_incomplete_spec(info) {
        // MIGRATE: its own key finder; each key is read and deleted.
        return fallback()
            .into_iter()
            .map(|i| (i, selector::READ | selector::WRITE))
            .collect();
    }
    let Ok(keys) = super::keyspec::keys(info, args, &fallback) else {
        return Vec::new();
    };
    // Shard channels are `not_key` specs: not keys to ACL.
    keys.into_iter()
        .filter(|k| !k.flags.contains(&"not_key"))
        .map(|k| (k.index, need_of(&k.flags)))
        .collect()
}

/// Checks `cmd` with `args` against `user`'s permissions.
pub fn check(user: &User, cmd: &'static table::Cmd, args: &Args) -> Result<(), Denied> {
    if user.unrestricted() {
        return Ok(());
    }
    let cat = the_catalog();
    let Some(id) = cat.id(cmd.name) else {
        return Ok(());
    };
    let channels: Vec<(usize, bool)> = match channel_spec(cmd.name) {
        Some((one, pattern)) => {
            let end = if one { 2.min(args.len()) } else { args.len() };
            (1..end).map(|i| (i, pattern)).collect()
        }
        None => Vec::new(),
    };
    let keys = || key_needs(cmd, id, args);
    let req = selector::Request {
        id,
        args,
        keys: &keys,
        channels: &channels,
    };
    user.check(cat, &req)
}

/// SORT's BY and GET patterns: allowed only to a user who may run the
/// command and read every key.
pub fn may_read_any_key(ctx: &Ctx, cmd_name: &str, args: &Args) -> bool {
    let Some(user) = &ctx.client.user else {
        return true;
    };
    if user.unrestricted() {
        return true;
    }
    let cat = the_catalog();
    let (Some(id), Some(cmd)) = (cat.id(cmd_name), table::lookup(cmd_name.as_bytes())) else {
        return true;
    };
    let keys = || key_needs(cmd, id, args);
    let req = selector::Request {
        id,
        args,
        keys: &keys,
        channels: &[],
    };
    user.allows_with_all_keys(cat, &req, selector::READ)
}

/// Brings the connection's user up to date after an ACL change. A user
/// that no longer exists ends the connection.
fn refresh(ctx: &mut Ctx) -> bool {
    ctx.client.acl_gen = ctx.srv.acl.generation();
    let Some(u) = &ctx.client.user else {
        return true;
    };
    match ctx.srv.acl.user(&u.name) {
        Some(fresh) => {
            ctx.client.set_acl_user(Some(fresh));
            true
        }
        None => {
            ctx.client.set_acl_user(Some(ctx.srv.acl.default_user()));
            ctx.client.authenticated = false;
            false
        }
    }
}

/// The check dispatch makes: `Some(reply)` when the command must not run
/// (the connection's user lacks a permission, or was deleted).
pub fn refusal(ctx: &mut Ctx, cmd: &'static table::Cmd, args: &Args) -> Option<String> {
    if ctx.client.acl_gen != ctx.srv.acl.generation() && !refresh(ctx) {
        ctx.actions.push(super::Action::Close);
        return Some(String::new());
    }
    let user = ctx.client.user.clone()?;
    let Err(d) = check(&user, cmd, args) else {
        return None;
    };
    let context = if ctx.client.multi.is_some() {
        Context::Multi
    } else {
        Context::Toplevel
    };
    log_denial(ctx, &user, cmd, args, d, context);
    Some(match d.reason {
        Reason::Command => format!(
            "NOPERM this user has no permissions to run the '{}' command",
            cmd.name
        ),
        Reason::Key => {
            "NOPERM this user has no permissions to access one of the keys used as arguments".into()
        }
        Reason::Channel => {
            "NOPERM this user has no permissions to access one of the channels used as arguments"
                .into()
        }
        Reason::Auth => "no permission".into(),
    })
}

/// EXEC's check of a queued command (the rules may have changed since it
/// was queued).
pub fn exec_refusal(ctx: &mut Ctx, cmd: &'static table::Cmd, args: &Args) -> Option<String> {
    // Re-read the user only when some ACL changed since it was read.
    let gen = ctx.srv.acl.generation();
    if ctx.client.acl_gen != gen {
        ctx.client.acl_gen = gen;
        if let Some(u) = &ctx.client.user {
            if let Some(fresh) = ctx.srv.acl.user(&u.name) {
                ctx.client.set_acl_user(Some(fresh));
            }
        }
    }
    let user = ctx.client.user.clone()?;
    let d = check(&user, cmd, args).err()?;
    log_denial(ctx, &user, cmd, args, d, Context::Multi);
    let reason = match d.reason {
        Reason::Command => "no permission to execute the command or subcommand",
        Reason::Key => "no permission to touch the specified keys",
        Reason::Channel => "no permission to access one of the channels used as arguments",
        Reason::Auth => "no permission",
    };
    Some(format!("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}"))
}

/// A script's `redis.call`: the error text the script gets.
pub fn script_refusal(ctx: &mut Ctx, cmd: &'static table::Cmd, args: &Args) -> Option<String> {
    if ctx.client.acl_open {
        return None;
    }
    let user = ctx.client.user.clone()?;
    let d = check(&user, cmd, args).err()?;
    log_denial(ctx, &user, cmd, args, d, Context::Lua);
    Some(format!(
        "The user executing the script {}",
        match d.reason {
            Reason::Command => "can't run this command or subcommand",
            Reason::Key =>
                "can't access at least one of the keys mentioned in the command arguments",
            Reason::Channel => "can't publish to the channel mentioned in the command",
            Reason::Auth => "lacking the permissions for the command",
        }
    ))
}

fn log_denial(
    ctx: &mut Ctx,
    user: &User,
    cmd: &'static table::Cmd,
    args: &Args,
    d: Denied,
    context: Context,
) {
    let object = match d.reason {
        Reason::Command => cmd.name.as_bytes().to_vec(),
        _ => args.get(d.pos).to_vec(),
    };
    add_log(ctx, d.reason, context, object, user.name.clone(), args);
}

fn add_log(
    ctx: &mut Ctx,
    reason: Reason,
    context: Context,
    object: Vec<u8>,
    username: Vec<u8>,
    args: &Args,
) {
    let client_info = super::connection::client_line(ctx, &ctx.client.info.clone(), args);
    let max = ctx.srv.config.read().int("acllog-max-len").max(0) as usize;
    ctx.srv.acl.log_denial(
        Entry {
            count: 1,
            reason,
            context,
            object,
            username,
            ctime: crate::keyspace::now_ms(),
            client_info: client_info.trim_end().to_string(),
        },
        max,
    );
}

/// AUTH and HELLO … AUTH: on success the connection runs as the user.
pub fn authenticate(ctx: &mut Ctx, name: &[u8], pass: &[u8], args: &Args) -> bool {
    match ctx.srv.acl.authenticate(name, pass) {
        Some(u) => {
            set_user(ctx, u);
            ctx.client.authenticated = true;
            true
        }
        None => {
            let context = if ctx.client.multi.is_some() {
                Context::Multi
            } else {
                Context::Toplevel
            };
            add_log(
                ctx,
                Reason::Auth,
                context,
                args.get(0).to_vec(),
                name.to_vec(),
                args,
            );
            false
        }
    }
}

/// Makes the connection run as `u` (AUTH, RESET).
pub fn set_user(ctx: &mut Ctx, u: Arc<User>) {
    *ctx.client.info.user.lock() = u.name.clone();
    ctx.client.set_acl_user(Some(u));
    ctx.client.acl_gen = ctx.srv.acl.generation();
}

/// Closes the connections of users that were deleted (or, for ACL LOAD,
/// of every user but `default`).
fn kill_clients_of(ctx: &mut Ctx, doomed: impl Fn(&[u8]) -> bool) {
    let me = ctx.client.id;
    let victims: Vec<_> = ctx
        .srv
        .clients
        .lock()
        .values()
        .filter(|c| doomed(&c.user.lock()))
        .cloned()
        .collect();
    for c in victims {
        if c.id == me {
            ctx.client.close_after_reply = true;
        } else {
            c.kill();
        }
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// After a change that took channels away from a user: its subscribers
/// whose channels or patterns are no longer allowed are closed.
fn kill_revoked_subscribers(ctx: &mut Ctx, name: &[u8], allowed: &[Vec<u8>]) {
    let users: Vec<u64> = ctx
        .srv
        .clients
        .lock()
        .values()
        .filter(|c| *c.user.lock() == name)
        .map(|c| c.id)
        .collect();
    let mut doomed: Vec<u64> = Vec::new();
    for (id, ch, pattern) in ctx.srv.pubsub.subscriptions_of(&users) {
        let ok = allowed.iter().any(|p| {
            if pattern {
                p.as_slice() == &ch[..]
            } else {
                crate::glob::glob_match(p, &ch, false)
            }
        });
        if !ok && !doomed.contains(&id) {
            doomed.push(id);
        }
    }
    let clients = ctx.srv.clients.lock();
    for id in doomed {
        if id == ctx.client.id {
            ctx.client.close_after_reply = true;
        } else if let Some(c) = clients.get(&id) {
            c.kill();
        }
    }
}

pub fn setuser(ctx: &mut Ctx, a: &Args) {
    let ops: Vec<&[u8]> = a.iter().skip(3).collect();
    match ctx.srv.acl.set_user(a.get(2), &ops) {
        Ok(old) => {
            let now = ctx.srv.acl.user(a.get(2));
            if let (Some(old), Some(now)) = (old, now) {
                if let Some(allowed) = now.channels_lost(&old) {
                    kill_revoked_subscribers(ctx, a.get(2), &allowed);
                }
            }
            ctx.r.ok()
        }
        // As Redis's "safe" errors: no line breaks in the reply.
        Err(e) => ctx
            .r
            .error(&format!("ERR {}", e.replace(['\r', '\n'], " "))),
    }
}

pub fn deluser(ctx: &mut Ctx, a: &Args) {
    let names: Vec<&[u8]> = a.iter().skip(2).collect();
    match ctx.srv.acl.delete(&names) {
        Ok(n) => {
            kill_clients_of(ctx, |u| names.contains(&u));
            ctx.r.int(n as i64);
        }
        Err(e) => ctx.r.error(&format!("ERR {e}")),
    }
}

fn selector_fields(ctx: &mut Ctx, s: &selector::Selector) {
    let cat = catalog();
    ctx.r.bulk(b"commands");
    ctx.r.bulk(s.describe_commands(&cat).as_bytes());
    ctx.r.bulk(b"keys");
    ctx.r.bulk(&s.describe_keys());
    ctx.r.bulk(b"channels");
    ctx.r.bulk(&s.describe_channels());
}

pub fn getuser(ctx: &mut Ctx, a: &Args) {
    let Some(u) = ctx.srv.acl.user(a.get(2)) else {
        return ctx.r.null();
    };
    ctx.r.map(6);
    ctx.r.bulk(b"flags");
    let flags: Vec<&str> = u.flag_names().collect();
    ctx.r.set(flags.len());
    for f in flags {
        ctx.r.bulk(f.as_bytes());
    }
    ctx.r.bulk(b"passwords");
    ctx.r.array(u.passwords.len());
    for p in &u.passwords {
        ctx.r.bulk(p.as_bytes());
    }
    selector_fields(ctx, u.root());
    ctx.r.bulk(b"selectors");
    ctx.r.array(u.selectors.len() - 1);
    for s in &u.selectors[1..] {
        ctx.r.map(3);
        selector_fields(ctx, s);
    }
}

pub fn list(ctx: &mut Ctx, _a: &Args) {
    let cat = catalog();
    let users = ctx.srv.acl.users();
    ctx.r.array(users.len());
    for u in users {
        let mut line = b"user ".to_vec();
        line.extend_from_slice(&u.name);
        line.push(b' ');
        line.extend_from_slice(&u.describe(&cat));
        ctx.r.bulk(&line);
    }
}

pub fn users(ctx: &mut Ctx, _a: &Args) {
    let users = ctx.srv.acl.users();
    ctx.r.array(users.len());
    for u in users {
        ctx.r.bulk(&u.name);
    }
}

pub fn whoami(ctx: &mut Ctx, _a: &Args) {
    match ctx.client.user.clone() {
        Some(u) => ctx.r.bulk(&u.name),
        None => ctx.r.null(),
    }
}

pub fn cat(ctx: &mut Ctx, a: &Args) {
    if a.len() == 2 {
        ctx.r.array(CATEGORIES.len());
        for c in CATEGORIES {
            ctx.r.bulk(c.as_bytes());
        }
        return;
    }
    if a.len() != 3 {
        return subcommand_syntax(ctx, a);
    }
    let Some(bit) = crate::acl::catalog::category_bit(a.get(2)) else {
        let name = a.get(2);
        return ctx.r.error(&format!(
            "ERR Unknown category '{}'",
            lossy(&name[..name.len().min(128)])
        ));
    };
    let cat = catalog();
    let names: Vec<&str> = cat.in_category(bit).map(|i| cat.entries[i].name).collect();
    ctx.r.array(names.len());
    for n in names {
        ctx.r.bulk(n.as_bytes());
    }
}

fn subcommand_syntax(ctx: &mut Ctx, a: &Args) {
    ctx.r.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
        lossy(a.get(1))
    ));
}

pub fn genpass(ctx: &mut Ctx, a: &Args) {
    const MAX_BITS: i64 = 4096;
    if a.len() > 3 {
        return subcommand_syntax(ctx, a);
    }
    let bits = if a.len() == 3 {
        match parse_i64(a.get(2)) {
            Some(b) => b,
            None => return ctx.r.error("ERR value is not an integer or out of range"),
        }
    } else {
        256
    };
    if bits <= 0 || bits > MAX_BITS {
        return ctx.r.error(&format!("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to {MAX_BITS}"));
    }
    let chars = (bits as usize).div_ceil(4);
    let mut raw = vec![0u8; chars.div_ceil(2)];
    rand::Rng::fill(&mut rand::rng(), &mut raw[..]);
    let mut hex = String::with_capacity(raw.len() * 2);
    for b in raw {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(chars);
    ctx.r.bulk(hex.as_bytes());
}

pub fn log(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 {
        return subcommand_syntax(ctx, a);
    }
    let mut count = 10i64;
    if a.len() == 3 {
        if eq_ic(a.get(2), "reset") {
            ctx.srv.acl.log.lock().reset();
            return ctx.r.ok();
        }
        match parse_i64(a.get(2)) {
            Some(n) => count = n.max(0),
            None => return ctx.r.error("ERR value is not an integer or out of range"),
        }
    }
    let now = crate::keyspace::now_ms();
    let entries: Vec<Entry> = {
        let log = ctx.srv.acl.log.lock();
        log.iter().take(count as usize).cloned().collect()
    };
    ctx.r.array(entries.len());
    for e in entries {
        ctx.r.map(7);
        ctx.r.bulk(b"count");
        ctx.r.int(e.count as i64);
        ctx.r.bulk(b"reason");
        ctx.r.bulk(e.reason.name().as_bytes());
        ctx.r.bulk(b"context");
        ctx.r.bulk(e.context.name().as_bytes());
        ctx.r.bulk(b"object");
        ctx.r.bulk(&e.object);
        ctx.r.bulk(b"username");
        ctx.r.bulk(&e.username);
        ctx.r.bulk(b"age-seconds");
        ctx.r.double((now - e.ctime) as f64 / 1000.0);
        ctx.r.bulk(b"client-info");
        ctx.r.bulk(e.client_info.as_bytes());
    }
}

pub fn dryrun(ctx: &mut Ctx, a: &Args) {
    let Some(u) = ctx.srv.acl.user(a.get(2)) else {
        return ctx
            .r
            .error(&format!("ERR User '{}' not found", lossy(a.get(2))));
    };
    let rest = a.slice_from(3);
    let Some(mut cmd) = table::lookup(rest.get(0)) else {
        return ctx
            .r
            .error(&format!("ERR Command '{}' not found", lossy(rest.get(0))));
    };
    if !cmd.subs.is_empty() && rest.len() >= 2 {
        match table::lookup_sub(cmd, rest.get(1)) {
            Some(s) => cmd = s,
            None => {
                return ctx
                    .r
                    .error(&format!("ERR Command '{}' not found", lossy(rest.get(0))))
            }
        }
    }
    if !super::arity_ok(cmd.arity, rest.len()) {
        return ctx.r.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.name
        ));
    }
    match check(&u, cmd, &rest) {
        Ok(()) => ctx.r.ok(),
        Err(d) => {
            let msg = match d.reason {
                Reason::Command => format!(
                    "This user has no permissions to run the '{}' command",
                    cmd.name
                ),
                Reason::Key => format!(
                    "This user has no permissions to access the '{}' key",
                    lossy(rest.get(d.pos))
                ),
                _ => format!(
                    "This user has no permissions to access the '{}' channel",
                    lossy(rest.get(d.pos))
                ),
            };
            ctx.r.bulk(msg.as_bytes());
        }
    }
}

const NO_ACLFILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

fn aclfile(ctx: &Ctx) -> Option<String> {
    let f = ctx.srv.config.read().value("aclfile").to_string();
    (!f.is_empty()).then_some(f)
}

pub fn load(ctx: &mut Ctx, _a: &Args) {
    let Some(file) = aclfile(ctx) else {
        return ctx.r.error(NO_ACLFILE);
    };
    match ctx.srv.acl.load_file(std::path::Path::new(&file), &file) {
        Ok(()) => {
            // As Redis: every user but `default` was replaced, and its
            // connections are closed.
            kill_clients_of(ctx, |u| u != b"default");
            ctx.r.ok()
        }
        Err(e) => ctx
            .r
            .error(&format!("ERR {}", e.replace(['\r', '\n'], " "))),
    }
}

pub fn save(ctx: &mut Ctx, _a: &Args) {
    let Some(file) = aclfile(ctx) else {
        return ctx.r.error(NO_ACLFILE);
    };
    match ctx.srv.acl.save_file(std::path::Path::new(&file)) {
        Ok(()) => ctx.r.ok(),
        Err(e) => {
            tracing::warn!("Writing ACL file for ACL SAVE: {e}");
            ctx.r.error("ERR There was an error trying to save the ACLs. Please check the server logs for more information")
        }
    }
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "ACL",
        &[
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOAD",
            "    Reload users from the ACL file.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SAVE",
            "    Save the current config to the ACL file.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys found through the cached plain specs are the ones the
    /// full key-spec walk finds, for every command and argument count.
    #[test]
    fn cached_key_plans_match_the_key_spec_walk() {
        let cat = the_catalog();
        let names: Vec<Vec<u8>> = (0..12).map(|i| format!("a{i}").into_bytes()).collect();
        let mut checked = 0;
        for (id, e) in cat.entries.iter().enumerate() {
            if plans()[id].is_none() {
                continue;
            }
            let Some(cmd) = table::lookup(e.name.split('|').next().unwrap_or_default().as_bytes())
            else {
                continue;
            };
            let cmd = match e.name.split_once('|') {
                Some((_, sub)) => match table::lookup_sub(cmd, sub.as_bytes()) {
                    Some(s) => s,
                    None => continue,
                },
                None => cmd,
            };
            let info = super::super::keyspec::info_of(e.name).expect("meta");
            for argc in 1..names.len() {
                let owned = super::super::args::OwnedArgs::from_slices(&names[..argc]);
                let args = owned.args();
                let fast = key_needs(cmd, id, &args);
                let fallback = || cmd.key_indexes(&args);
                let slow: Vec<(usize, u8)> =
                    match super::super::keyspec::keys(info, &args, &fallback) {
                        Ok(k) => k
                            .into_iter()
                            .filter(|k| !k.flags.contains(&"not_key"))
                            .map(|k| (k.index, need_of(&k.flags)))
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                assert_eq!(fast, slow, "{} with {argc} arguments", e.name);
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} cases");
    }
}
