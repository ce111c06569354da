//! FUNCTION: the libraries of Lua functions FCALL runs (the registry is
//! `scripting::functions`). Every change is made and logged under the
//! registry's write lock, so snapshots (RDB, AOF base, full sync) agree
//! with the effect stream.

use super::{eq_ic, Args, Ctx};
use crate::persistence::rdb::file as rdb_file;
use crate::scripting::functions::Set;
use crate::scripting::{engine, flag};

pub fn load(ctx: &mut Ctx, a: &Args) {
    let mut replace = false;
    let mut i = 2;
    while i < a.len() - 1 {
        let t = a.get(i);
        if !eq_ic(t, "REPLACE") {
            return ctx.r.error(&format!(
                "ERR Unknown option given: {}",
                String::from_utf8_lossy(t)
            ));
        }
        replace = true;
        i += 1;
    }
    let code = a.get(a.len() - 1);
    // Our master's and the AOF's loads were checked when first made.
    let timeout = if ctx.client.is_master || ctx.client.loading {
        None
    } else {
        Some(engine::LOAD_TIMEOUT)
    };
    let scripts = &ctx.srv.scripts;
    let mut vm = match scripts.checkout() {
        Ok(vm) => vm,
        Err(e) => return ctx.r.error(&e),
    };
    let mut set = scripts.functions.write();
    let r = set.create(code, replace, &mut |id, body| {
        vm.load_library(id, body, timeout)
    });
    let name = match r {
        Ok(name) => name,
        Err(e) => {
            drop(set);
            scripts.checkin(vm);
            return ctx.r.error_bytes(&[&b"ERR "[..], &e].concat());
        }
    };
    ctx.log(&a.iter().collect::<Vec<_>>());
    drop(set);
    scripts.checkin(vm);
    ctx.dirty(1);
    ctx.r.bulk(name.as_bytes());
}

pub fn delete(ctx: &mut Ctx, a: &Args) {
    let mut set = ctx.srv.scripts.functions.write();
    if !set.delete(a.get(2)) {
        return ctx.r.error("ERR Library not found");
    }
    ctx.log(&a.iter().collect::<Vec<_>>());
    drop(set);
    ctx.dirty(1);
    ctx.r.ok();
}

pub fn flush(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 {
        return syntax(ctx, a);
    }
    if a.len() == 3 && !(eq_ic(a.get(2), "ASYNC") || eq_ic(a.get(2), "SYNC")) {
        return ctx
            .r
            .error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
    }
    let mut set = ctx.srv.scripts.functions.write();
    *set = Set::default();
    ctx.log(&a.iter().collect::<Vec<_>>());
    drop(set);
    ctx.dirty(1);
    ctx.r.ok();
}

/// Redis's reply to extra arguments, naming the subcommand as typed.
fn syntax(ctx: &mut Ctx, a: &Args) {
    ctx.r.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(a.get(1))
    ));
}

pub fn list(ctx: &mut Ctx, a: &Args) {
    let mut j = 2;
    let (mut withcode, mut pattern): (bool, Option<&[u8]>) = (false, None);
    while j < a.len() {
        let t = a.get(j);
        if eq_ic(t, "WITHCODE") && !withcode {
            withcode = true;
        } else if eq_ic(t, "LIBRARYNAME") && pattern.is_none() {
            if j + 1 >= a.len() {
                return ctx.r.error("ERR library name argument was not given");
            }
            pattern = Some(a.get(j + 1));
            j += 1;
        } else {
            return ctx.r.error(&format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(t)
            ));
        }
        j += 1;
    }
    let set = ctx.srv.scripts.functions.read();
    let libs: Vec<_> = set
        .libraries()
        .filter(|l| pattern.is_none_or(|p| crate::glob::glob_match(p, l.name.as_bytes(), false)))
        .collect();
    let r = &mut ctx.r;
    r.array(libs.len());
    for lib in libs {
        r.map(if withcode { 4 } else { 3 });
        r.bulk(b"library_name");
        r.bulk(lib.name.as_bytes());
        r.bulk(b"engine");
        r.bulk(b"LUA");
        r.bulk(b"functions");
        r.array(lib.functions.len());
        for f in &lib.functions {
            r.map(3);
            r.bulk(b"name");
            r.bulk(f.name.as_bytes());
            r.bulk(b"description");
            match &f.desc {
                Some(d) => r.bulk(d),
                None => r.null(),
            }
            r.bulk(b"flags");
            let names: Vec<&str> = flag::NAMES
                .iter()
                .filter(|(_, b)| f.flags & b != 0)
                .map(|(n, _)| *n)
                .collect();
            r.set(names.len());
            for n in names {
                r.simple(n);
            }
        }
        if withcode {
            r.bulk(b"library_code");
            r.bulk(&lib.code);
        }
    }
}

pub fn stats(ctx: &mut Ctx, _a: &Args) {
    let scripts = &ctx.srv.scripts;
    let running = scripts.running();
    if running.as_ref().is_some_and(|t| t.eval) {
        return ctx.r.error(super::scripting::BUSY_EVAL);
    }
    let (libs, fns) = {
        let set = scripts.functions.read();
        (set.library_count(), set.function_count())
    };
    let r = &mut ctx.r;
    r.map(2);
    r.bulk(b"running_script");
    match running {
        None => r.null(),
        Some(t) => {
            r.map(3);
            r.bulk(b"name");
            r.bulk(t.name.as_bytes());
            r.bulk(b"command");
            r.array(t.command.len());
            for c in &t.command {
                r.bulk(c);
            }
            r.bulk(b"duration_ms");
            r.int(t.started.map_or(0, |s| s.elapsed().as_millis() as i64));
        }
    }
    r.bulk(b"engines");
    r.map(1);
    r.bulk(b"LUA");
    r.map(2);
    r.bulk(b"libraries_count");
    r.int(libs as i64);
    r.bulk(b"functions_count");
    r.int(fns as i64);
}

/// The libraries as RDB function records, then the RDB version and a
/// CRC-64, as Redis lays the payload out.
pub fn dump(ctx: &mut Ctx, _a: &Args) {
    let codes = ctx.srv.scripts.functions.codes();
    ctx.r.bulk(&rdb_file::function_payload(&codes));
}

pub fn restore(ctx: &mut Ctx, a: &Args) {
    if a.len() > 4 {
        return syntax(ctx, a);
    }
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let mut policy = Policy::Append;
    if a.len() == 4 {
        let p = a.get(3);
        policy = if eq_ic(p, "APPEND") {
            Policy::Append
        } else if eq_ic(p, "REPLACE") {
            Policy::Replace
        } else if eq_ic(p, "FLUSH") {
            Policy::Flush
        } else {
            return ctx.r.error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
        };
    }
    let codes = match rdb_file::read_function_payload(a.get(2)) {
        Ok(c) => c,
        Err(e) => return ctx.r.error(&format!("ERR {e}")),
    };
    let scripts = &ctx.srv.scripts;
    let built = scripts.build_functions(&codes);
    let incoming = match built {
        Ok(s) => s,
        Err(e) => return ctx.r.error(&format!("ERR {e}")),
    };
    let mut set = scripts.functions.write();
    let r = if policy == Policy::Flush {
        *set = incoming;
        Ok(())
    } else {
        set.join(incoming, policy == Policy::Replace)
    };
    if let Err(e) = r {
        return ctx.r.error(&format!("ERR {e}"));
    }
    ctx.log(&a.iter().collect::<Vec<_>>());
    drop(set);
    ctx.dirty(1);
    ctx.r.ok();
}

pub fn kill(ctx: &mut Ctx, _a: &Args) {
    super::scripting::kill(ctx, false)
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "FUNCTION",
        &[
            "LOAD [REPLACE] <LIBRARY CODE>",
            "    Load a library of functions; its first line is '#!lua name=<library>'.",
            "DELETE <LIBRARY NAME>",
            "    Delete the library with the given name.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    List the loaded libraries, their functions and, with WITHCODE, their code.",
            "STATS",
            "    Describe the function running now, if any, and count the libraries.",
            "KILL",
            "    Stop the function that is running, if it has not written.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete every library.",
            "DUMP",
            "    Serialize the loaded libraries.",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Load libraries from a FUNCTION DUMP payload (APPEND by default).",
        ],
    );
}
