//! One sandboxed Lua 5.1 interpreter and how a script runs in it.
//!
//! The sandbox follows Redis 7.0: the base, table, string and math
//! libraries (no os, io, package, print, dofile or loadfile), globals and
//! library tables read-only, reading an undefined global an error, the
//! `redis` API table, and Redis's `math.random`. Redis patches Lua to get
//! read-only tables; stock Lua has none, so scripts see proxies: empty
//! tables whose metatables read through to the real ones and refuse
//! writes with Redis's message.
//!
//! A script reaches the server only through [`Host`], installed for the
//! duration of one run on this thread.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, RegistryKey, StdLib, Table, Value, VmState,
};

use super::convert;
use super::functions::{self, Registered};
use crate::keyspace::value::FastMap;

/// What a script may ask of the server while it runs.
pub trait Host {
    /// Runs one command with `args`, appending its reply (RESP3 when
    /// `resp3`) to `out`. `Err` is a refusal before the command ran, in
    /// Redis's words ("-CODE msg", or a bare message meaning ERR).
    /// The arguments are `buf[r]` for each range `r` of `ranges`, laid out
    /// once, contiguously, so the host can use them without copying.
    fn call(
        &mut self,
        buf: &[u8],
        ranges: &[std::ops::Range<usize>],
        resp3: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), String>;
    /// Called every 100,000 Lua instructions: `Err(msg)` stops the script
    /// with that error (SCRIPT KILL, or the host giving up the run).
    fn tick(&mut self) -> Result<(), String>;
    /// `redis.log(level, …)`.
    fn log(&mut self, level: i64, msg: &[u8]);
    /// `redis.set_repl(flags)`.
    fn set_repl(&mut self, flags: i64);
    /// `redis.acl_check_cmd(…)`: whether the script's user may run the
    /// command; `None` for a command that does not exist.
    fn acl_check(&mut self, args: &[&[u8]]) -> Option<bool>;
}

/// How a run ended.
pub enum Outcome {
    /// The reply is written.
    Replied,
    /// The host stopped the run through `tick` or `call`; nothing was
    /// written. Carries the host's message.
    Stopped(String),
}

/// What the Rust callbacks reach during a run.
pub(super) struct RunState {
    pub(super) host: *mut (dyn Host + 'static),
    pub(super) resp3: bool,
    /// Set once the host stopped the run: every later call fails, so a
    /// `pcall` in the script cannot swallow the stop.
    pub(super) stopped: Option<String>,
    /// The last command's reply.
    pub(super) buf: Vec<u8>,
    /// The last refusal's message.
    pub(super) msg: String,
    /// `redis.call`'s arguments, reused from call to call.
    pub(super) args: Vec<u8>,
    pub(super) ranges: Vec<std::ops::Range<usize>>,
}

thread_local! {
    static RUN: Cell<*mut RunState> = const { Cell::new(std::ptr::null_mut()) };
}

/// The run on this thread, null when no script is running. It stays
/// valid until the run ends; Lua callbacks run synchronously inside it.
pub(super) fn run_state() -> *mut RunState {
    RUN.with(|r| r.get())
}

/// The run on this thread, if a script is running.
fn with_run<R>(f: impl FnOnce(&mut RunState) -> R) -> Option<R> {
    let p = RUN.with(|r| r.get());
    if p.is_null() {
        return None;
    }
    // SAFETY: RUN points at a RunState on the stack of `Vm::run`, set for
    // exactly the duration of that call on this thread and cleared before
    // it returns; Lua callbacks run synchronously inside it and no
    // reference outlives the closure.
    Some(f(unsafe { &mut *p }))
}

/// The Lua side of the sandbox: our own code, run once per interpreter.
/// `env` is what scripts see as their globals; it and everything scripts
/// can reach through it are readonly tables (see `readonly`).
const PRELUDE: &str = r##"
local rawget, rawset, setmetatable, getmetatable, error, type, tostring, pairs, select, unpack =
      rawget, rawset, setmetatable, getmetatable, error, type, tostring, pairs, select, unpack
local real_pcall, dbg = pcall, debug
local G = _G
local protect, set_readonly, is_readonly, set_fields =
      __redis_protect, __redis_set_readonly, __redis_is_readonly, __redis_set_fields
local function refuse() error("Attempt to modify a readonly table", 2) end
local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end
-- What getmetatable shows of the tables whose real metatable scripts must
-- not reach: a metatable like that of the globals.
local ro_meta_view = {__index = missing}
local stopped, errmsg = __redis_stopped, __redis_errmsg
local api = __redis_lib
api.error_reply = function(...)
  local n, e = select("#", ...), ...
  if n ~= 1 or type(e) ~= "string" then return {err = "ERR wrong number or type of arguments"} end
  -- As Redis splits it: the code is what comes before the first space
  -- (maybe nothing), and CR/LF are trimmed from both ends of the rest.
  if e:sub(1, 1) ~= "-" then e = "-" .. e end
  local code, msg
  local sp = e:find(" ", 1, true)
  if sp then code, msg = e:sub(2, sp - 1), e:sub(sp + 1) else code, msg = "ERR", e:sub(2) end
  msg = msg:gsub("^[\r\n]+", ""):gsub("[\r\n]+$", "")
  return {err = code .. " " .. msg}
end
api.status_reply = function(...)
  local n, s = select("#", ...), ...
  if n ~= 1 or type(s) ~= "string" then return {err = "ERR wrong number or type of arguments"} end
  return {ok = s}
end
-- The Lua debugger's side in Lua (see ldb.rs). `repr` shows a value as
-- Redis's debugger does: strings quoted and escaped, numbers as %g,
-- tables as {v; v} when they are arrays and {[k]=v; ...} otherwise,
-- nested at most ten deep; functions and the like by address.
local fmt, byte, tostr, tconcat = string.format, string.byte, tostring, table.concat
local REPR_ESC = {["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                  ["\a"] = "\\a", ["\b"] = "\\b"}
local function quote(s)
  return '"' .. (s:gsub('[%z\1-\31\127-\255\\"]', function(c)
    return REPR_ESC[c] or fmt("\\x%02x", byte(c))
  end)) .. '"'
end
local function repr(v, level)
  if level == 10 then return "<max recursion level reached! Nested table?>" end
  level = level + 1
  local t = type(v)
  if t == "string" then return quote(v)
  elseif t == "boolean" then return v and "true" or "false"
  elseif t == "number" then return fmt("%g", v)
  elseif t == "nil" then return "nil"
  elseif t == "table" then
    local expected, is_array, items, pairs_ = 1, true, {}, {}
    local k, val = next(v)
    while k ~= nil do
      if is_array and (type(k) ~= "number" or k ~= expected) then is_array = false end
      items[#items + 1] = repr(val, level)
      pairs_[#pairs_ + 1] = "[" .. repr(k, level) .. "]=" .. repr(val, level)
      expected = expected + 1
      k, val = next(v, k)
    end
    return "{" .. tconcat(is_array and items or pairs_, "; ") .. "}"
  end
  return '"' .. t .. "@" .. (tostr(v):match("0x%x+") or "(nil)") .. '"'
end
local ldb_line, ldb_log = __redis_ldb_line, __redis_ldb_log
api.breakpoint = __redis_ldb_breakpoint
api.debug = function(...)
  local line = ldb_line()
  if not line then return end
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = repr((select(i, ...)), 0) end
  ldb_log("<debug> line " .. line .. ": " .. tconcat(parts, ", "))
end
api.replicate_commands = function() return true end
-- Tables are filled in the order Redis fills its own: the order keys go
-- into a Lua table decides the order `pairs` and `next` walk it.
-- The `redis` table of scripts; functions lack its last three fields.
local REDIS_KEYS = {
  "call", "pcall", "log", "LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING",
  "REDIS_VERSION_NUM", "REDIS_VERSION", "setresp", "sha1hex", "error_reply", "status_reply",
  "set_repl", "REPL_NONE", "REPL_AOF", "REPL_SLAVE", "REPL_REPLICA", "REPL_ALL", "acl_check_cmd",
}
local EVAL_ONLY = {"breakpoint", "debug", "replicate_commands"}
local function redis_table(for_eval)
  local t = {}
  for _, k in ipairs(REDIS_KEYS) do t[k] = api[k] end
  if for_eval then for _, k in ipairs(EVAL_ONLY) do t[k] = api[k] end end
  return t
end
-- The globals as Lua's base library, the libraries Redis loads and
-- Redis itself create them. A name prefixed with "-" is one Redis keeps
-- out of its globals: Lua still makes its key (with no value) before the
-- globals' __newindex refuses it, so it takes a place in the table.
local GLOBAL_KEYS = {
  "_G", "assert", "collectgarbage", "-dofile", "error", "gcinfo", "-getfenv", "getmetatable",
  "-loadfile", "load", "loadstring", "next", "pcall", "-print", "rawequal", "rawget", "rawset",
  "select", "-setfenv", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall",
  "_VERSION", "ipairs", "pairs", "-newproxy", "coroutine", "table", "string", "math", "debug",
  "cjson", "struct", "cmsgpack", "bit", "redis",
}
-- Scripts' pcall hands back the message of a Redis error table, and
-- cannot catch a stop requested by the server.
local function finish(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if stopped() then error(e, 0) end
  if type(e) == "table" and type(e.err) == "string" then e = e.err end
  if type(e) == "userdata" then e = errmsg(e, true) end
  return false, e
end
local function safe_pcall(f, ...) return finish(real_pcall(f, ...)) end
local libs = {bit = __redis_bit, cjson = __redis_cjson, cmsgpack = __redis_cmsgpack, struct = __redis_struct}
for _, name in ipairs({"string", "table", "math", "coroutine"}) do libs[name] = G[name] end
local real_loadstring, real_load, real_setfenv, concat = loadstring, load, setfenv, table.concat
-- What `_G` names for a script (`front`, with the extra keys `extra` in
-- that order) and the environment its code runs in (`env`, reading
-- through to `front`). `front` comes from Rust: Lua's globals table
-- starts with room for two keys, which a table constructor cannot give.
local function make_globals(front, env, extra, for_eval)
  local v = {redis = redis_table(for_eval), pcall = safe_pcall, _G = front, debug = true}
  for _, k in ipairs({
    "assert", "collectgarbage", "error", "gcinfo", "getmetatable", "load", "loadstring", "next",
    "rawequal", "rawget", "select", "tonumber", "tostring", "type", "unpack", "xpcall",
    "_VERSION", "ipairs", "pairs",
  }) do v[k] = G[k] end
  for k, lib in pairs(libs) do v[k] = lib end
  -- Code loaded by a script runs with the script's globals. (A precompiled
  -- chunk is parsed as text, as in Redis's Lua: see vendor/lua-src.)
  local function sandboxed_loadstring(s, name)
    local f, e = real_loadstring(s, name)
    if f then real_setfenv(f, env) end
    return f, e
  end
  v.loadstring = sandboxed_loadstring
  v.load = function(reader, name)
    if type(reader) ~= "function" then return real_load(reader, name) end
    local parts = {}
    while true do
      local p = reader()
      if p == nil or p == "" then break end
      parts[#parts + 1] = p
    end
    return sandboxed_loadstring(concat(parts), name)
  end
  -- The readonly check comes first, as in Redis, where the globals'
  -- metatable has no `__metatable` field for setmetatable to stop at.
  v.setmetatable = function(t, m)
    if is_readonly(t) then error("Attempt to modify a readonly table", 0) end
    return setmetatable(t, m)
  end
  v.rawset = rawset
  for _, k in ipairs(GLOBAL_KEYS) do
    if k:sub(1, 1) == "-" then rawset(front, k:sub(2), nil) else rawset(front, k, v[k]) end
  end
  -- Redis's error handler setup sets `debug` to nil after the libraries.
  rawset(front, "debug", nil)
  for _, k in ipairs(extra) do rawset(front, k, extra[k]) end
  setmetatable(front, {__index = missing})
  return front
end
-- EVAL's globals also hold Redis's error handler and KEYS and ARGV (set
-- at the first EVAL in Redis, and kept); a function's hold none of them.
local env, fn_env = {}, {}
local front = make_globals(__redis_front_eval, env,
  {"__redis__err__handler", "KEYS", "ARGV", KEYS = {}, ARGV = {}, __redis__err__handler = true}, true)
local fn_front = make_globals(__redis_front_fn, fn_env, {}, false)
local run_meta = {__index = front, __newindex = refuse, __metatable = ro_meta_view}
local fn_meta = {__index = fn_front, __newindex = refuse, __metatable = ro_meta_view}
-- FUNCTION LOAD runs a library's code with only `load_visible` as its
-- globals: a `redis` table with register_function, log and the version.
local function strict(t)
  local p = {}
  setmetatable(p, {
    __index = function(_, k)
      local v = t[k]
      if v == nil then
        error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
      end
      return v
    end,
    __newindex = refuse,
    __metatable = ro_meta_view,
  })
  return p
end
local load_api = {}
load_api.register_function = __redis_register
for _, k in ipairs({"log", "LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING", "REDIS_VERSION_NUM", "REDIS_VERSION"}) do
  load_api[k] = api[k]
end
local load_front = setmetatable({redis = strict(load_api)}, {__index = missing})
local load_meta = {__index = load_front, __newindex = refuse, __metatable = ro_meta_view}
local set_meta = dbg.setmetatable
set_meta(env, run_meta)
set_meta(fn_env, fn_meta)
local function handler(err)
  local level, i = 2, nil
  while true do
    i = dbg.getinfo(level, "nSl")
    if not i then break end
    if i.what ~= "C" and i.source ~= "=redis_lib" then break end
    level = level + 1
  end
  if type(err) ~= "table" then
    if type(err) == "userdata" then
      local m, counted = errmsg(err)
      err = {err = m}
      if counted then err.ignore_error_stats_update = true end
    else err = {err = "ERR " .. tostring(err)} end
  end
  if i then
    err.source = i.source
    err.line = i.currentline
  end
  return err
end
rawset(front, "__redis__err__handler", handler)
-- An EVAL's KEYS and ARGV replace the last ones in its globals, which are
-- readonly, so they are set past the flag. They stay until the next EVAL,
-- as in Redis; set to nil, their keys would lose their places.
local function run(f, keys, argv)
  set_fields(front, "KEYS", keys, "ARGV", argv)
  return xpcall(f, handler)
end
-- A function gets KEYS and ARGV as its arguments, not as globals.
local function call(f, keys, argv)
  return xpcall(function() return f(keys, argv) end, handler)
end
local function load_library(f)
  set_readonly(fn_env, false)
  set_meta(fn_env, load_meta)
  set_readonly(fn_env, true)
  local ok, res = xpcall(f, handler)
  set_readonly(fn_env, false)
  set_meta(fn_env, fn_meta)
  set_readonly(fn_env, true)
  return ok, res
end
math.random, math.randomseed = __redis_random, __redis_randomseed_raw
-- Everything a script can reach is readonly, as in Redis: the globals
-- (with the libraries in them and their metatables), the strings'
-- metatable, and the load-time API.
protect(front)
protect(fn_front)
protect(getmetatable(""))
protect(ro_meta_view)
protect(load_front.redis)
set_readonly(env, true)
set_readonly(fn_env, true)
__redis_errmsg, __redis_stopped, __redis_lib, __redis_random, __redis_randomseed_raw, __redis_bit, __redis_register, __redis_cjson, __redis_cmsgpack, __redis_struct, __redis_protect, __redis_set_readonly, __redis_is_readonly, __redis_set_fields, __redis_front_eval, __redis_front_fn =
  nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil
debug = nil
-- The debugger's commands that read the paused script, called from the
-- line hook. Each returns its log entries: a string as it is, a number as
-- that source line, {s} as a value cut at the session's maxlen. Only the
-- script's own frames count (ours, such as the runner, are skipped).
local ldb = {}
-- The first of the script's frames from `level` out, in its caller's
-- numbering (one less than ours).
local function user_frame(level)
  while true do
    local i = dbg.getinfo(level + 1, "Snl")
    if not i then return nil end
    if i.source == "@user_script" then return level, i end
    level = level + 1
  end
end
function ldb.print(name)
  local level = user_frame(2)
  while level do
    local i = 1
    while true do
      local n, v = dbg.getlocal(level, i)
      if n == nil then break end
      if n == name then return {{"<value> " .. repr(v, 0)}} end
      i = i + 1
    end
    level = user_frame(level + 1)
  end
  if name == "ARGV" or name == "KEYS" then return {{"<value> " .. repr(rawget(front, name), 0)}} end
  return {"No such variable."}
end
function ldb.print_all()
  local out, level = {}, user_frame(2)
  if level then
    local i = 1
    while true do
      local n, v = dbg.getlocal(level, i)
      if n == nil then break end
      if not n:find("(*temporary)", 1, true) then out[#out + 1] = {"<value> " .. n .. " = " .. repr(v, 0)} end
      i = i + 1
    end
  end
  if #out == 0 then out[1] = "No local variables in the current context." end
  return out
end
function ldb.trace()
  local out, first, level, i = {}, true, user_frame(2)
  while level do
    -- A function called from our Lua (a script's pcall) is unnamed, as
    -- one called from C is in Redis.
    local caller = dbg.getinfo(level + 1, "S")
    local name = i.name
    if i.what == "main" or (caller and caller.source == "=redis_lib") then name = nil end
    out[#out + 1] = (first and "In " or "From ") .. (name or "top level") .. ":"
    out[#out + 1] = i.currentline
    first = false
    level, i = user_frame(level + 1)
  end
  if #out == 0 then out[1] = "<error> Can't retrieve Lua stack." end
  return out
end
function ldb.eval(code)
  local f, e = real_loadstring("return " .. code, "@ldb_eval")
  if not f then
    f, e = real_loadstring(code, "@ldb_eval")
    if not f then return {"<error> " .. e} end
  end
  real_setfenv(f, env)
  local ok, r = real_pcall(f)
  if not ok then
    local t = type(r)
    return {"<error> " .. ((t == "string" or t == "number") and tostr(r) or "(null)")}
  end
  return {{"<retval> " .. repr(r, 0)}}
end
function ldb.redis(args)
  real_pcall(rawget(front, "redis").call, unpack(args))
  return {}
end
__redis_ldb_line, __redis_ldb_log, __redis_ldb_breakpoint = nil, nil, nil
return env, fn_env, run, call, load_library, ldb
"##;

/// One interpreter with the scripts it has compiled and the function
/// libraries it has loaded.
pub struct Vm {
    lua: Lua,
    /// The environments of EVAL scripts and of library functions: Redis
    /// runs them in separate interpreters with different globals.
    env: Table,
    fn_env: Table,
    runner: Function,
    caller: Function,
    loader: Function,
    /// Compiled scripts and library functions live in the Lua registry:
    /// a `Function` handle would take a slot of mlua's reference stack,
    /// which holds 8,000 at most.
    compiled: FastMap<[u8; 40], RegistryKey>,
    /// Library id → its functions, in registration order.
    libs: FastMap<u64, Vec<RegistryKey>>,
    /// Library id → the Lua memory its loading kept (INFO's
    /// `used_memory_vm_functions`).
    lib_bytes: FastMap<u64, usize>,
    runs: u64,
    /// The cache epoch the compiled functions belong to.
    pub epoch: u64,
    /// The function registry's generation `libs` was last pruned at.
    pub fn_gen: u64,
    /// The last run's reply is an error the stats already counted.
    pub error_counted: bool,
    /// `redis.call`'s reply and argument buffers, kept between runs.
    spare: (Vec<u8>, Vec<u8>, Vec<std::ops::Range<usize>>),
    spare_reply: Vec<u8>,
}

/// Buffers up to this size are kept from one run to the next.
const SPARE_MAX: usize = 64 * 1024;

/// A library being loaded on this thread: what it registered so far.
struct LoadState {
    deadline: Option<Instant>,
    registered: Vec<(Registered, RegistryKey)>,
}

thread_local! {
    static LOAD: RefCell<Option<LoadState>> = const { RefCell::new(None) };
}

/// How long FUNCTION LOAD may run a library's code (Redis's limit).
pub const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

impl Vm {
    pub fn new(epoch: u64) -> mlua::Result<Vm> {
        // SAFETY of the unsafe constructor: the debug library is needed to
        // find an error's line; the prelude captures it and then removes it
        // from the globals, as Redis does.
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
                LuaOptions::new(),
            )
        };
        let g = lua.globals();
        for name in [
            "print", "dofile", "loadfile", "module", "require", "package",
        ] {
            g.raw_set(name, Value::Nil)?;
        }
        g.raw_set(
            "__redis_errmsg",
            lua.create_function(|_, (v, raw): (Value, bool)| {
                let counted = matches!(&v, Value::Error(e) if is_counted(e));
                let text = match v {
                    // A library's Lua-style error reaches a script's pcall
                    // as the plain message, as in Redis.
                    Value::Error(e) if raw && lua_error_message(&e).is_some() => {
                        lua_error_message(&e).unwrap_or_default()
                    }
                    Value::Error(e) => error_text(&e),
                    other => format!("ERR {}", other.to_string().unwrap_or_default()),
                };
                Ok((text, counted))
            })?,
        )?;
        g.raw_set(
            "__redis_stopped",
            lua.create_function(|_, ()| Ok(with_run(|r| r.stopped.is_some()).unwrap_or(false)))?,
        )?;
        g.raw_set("__redis_lib", api_table(&lua)?)?;
        g.raw_set("__redis_bit", super::bitlib::open(&lua)?)?;
        let cjson = super::cjson::open(&lua)?;
        locate_errors(&lua, &cjson)?;
        g.raw_set("__redis_cjson", cjson)?;
        // These two wrap their Rust halves in Lua themselves (results
        // spread in Lua, never held by Rust): no extra wrapper here.
        g.raw_set("__redis_cmsgpack", super::msgpack::open(&lua)?)?;
        g.raw_set("__redis_struct", super::structlib::open(&lua)?)?;
        g.raw_set("__redis_register", lua.create_function(register_function)?)?;
        use super::readonly;
        let c_functions: [(&str, mlua::ffi::lua_CFunction); 4] = [
            ("__redis_protect", readonly::protect),
            ("__redis_set_readonly", readonly::set_readonly),
            ("__redis_is_readonly", readonly::is_readonly),
            ("__redis_set_fields", readonly::set_fields),
        ];
        for (name, f) in c_functions {
            // SAFETY: plain Lua C functions (see `readonly`).
            g.raw_set(name, unsafe { lua.create_c_function(f)? })?;
        }
        g.raw_set("__redis_random", lua.create_function(math_random)?)?;
        g.raw_set(
            "__redis_randomseed_raw",
            lua.create_function(|lua, args: MultiValue| {
                let n = int_arg(lua, &args, 0)?;
                super::rand48::seed(n);
                Ok(())
            })?,
        )?;
        // Lua's globals table starts with room for two keys; so do ours,
        // for the order their keys take (see the prelude).
        g.raw_set("__redis_front_eval", lua.create_table_with_capacity(0, 2)?)?;
        g.raw_set("__redis_front_fn", lua.create_table_with_capacity(0, 2)?)?;
        g.raw_set(
            "__redis_ldb_line",
            lua.create_function(|_, ()| Ok(super::ldb::with(|l| l.current)))?,
        )?;
        g.raw_set(
            "__redis_ldb_log",
            lua.create_function(|_, s: mlua::String| {
                super::ldb::log(s.as_bytes().to_vec());
                Ok(())
            })?,
        )?;
        g.raw_set(
            "__redis_ldb_breakpoint",
            lua.create_function(|_, ()| Ok(super::ldb::with(|l| l.lua_bp = true).is_some()))?,
        )?;
        let (env, fn_env, runner, caller, loader, ldb): (
            Table,
            Table,
            Function,
            Function,
            Function,
            Table,
        ) = lua.load(PRELUDE).set_name("=redis_lib").call(())?;
        lua.set_named_registry_value(LDB_HELPERS, ldb)?;
        // Installed once: between runs there is no run to stop.
        install_hook(&lua);
        Ok(Vm {
            lua,
            env,
            fn_env,
            runner,
            caller,
            loader,
            compiled: FastMap::default(),
            libs: FastMap::default(),
            lib_bytes: FastMap::default(),
            runs: 0,
            epoch,
            fn_gen: 0,
            error_counted: false,
            spare: Default::default(),
            spare_reply: Vec::new(),
        })
    }

    /// Compiles `body` (its shebang line already blanked by the caller's
    /// offset) unless this interpreter already has it. The error is
    /// Redis's "Error compiling script" text, with Lua's message byte for
    /// byte (it quotes the source near the error, which may not be UTF-8).
    pub fn compile(&mut self, sha: &[u8; 40], body: &[u8]) -> Result<(), Vec<u8>> {
        if self.compiled.contains_key(sha) {
            return Ok(());
        }
        let failed = |msg: &[u8]| {
            let mut e = b"ERR Error compiling script (new function): ".to_vec();
            e.extend_from_slice(msg);
            e
        };
        let f = self
            .load_chunk(body, c"@user_script", &self.env)
            .map_err(|m| failed(&m))?;
        let key = self
            .lua
            .create_registry_value(f)
            .map_err(|e| failed(e.to_string().as_bytes()))?;
        self.compiled.insert(*sha, key);
        Ok(())
    }

    /// Runs a compiled script with KEYS and ARGV, writing EVAL's reply to
    /// `r`. `name` is what Redis's error text calls the script (its SHA).
    pub fn run(
        &mut self,
        sha: &[u8; 40],
        keys: &[&[u8]],
        argv: &[&[u8]],
        host: &mut dyn Host,
        r: &mut crate::resp::Reply,
    ) -> Outcome {
        self.error_counted = false;
        let Some(f) = self.compiled.get(sha).map(|k| k.id()) else {
            r.error("ERR script not compiled");
            return Outcome::Replied;
        };
        self.exec(f, sha, false, (keys, argv), host, r)
    }

    /// [`Vm::run`] under the Lua debugger, whose session (see `ldb`) has
    /// begun on this thread: the line hook stops where it says.
    pub fn run_debug(
        &mut self,
        sha: &[u8; 40],
        keys: &[&[u8]],
        argv: &[&[u8]],
        host: &mut dyn Host,
        r: &mut crate::resp::Reply,
    ) -> Outcome {
        self.lua.set_hook(
            HookTriggers::new()
                .every_line()
                .every_nth_instruction(100_000),
            debug_hook,
        );
        let out = self.run(sha, keys, argv, host, r);
        install_hook(&self.lua);
        if let Outcome::Stopped(_) = &out {
            // Ended from the debugger: reported like an error raised on
            // the line it stopped at.
            if let Some((msg, line)) = super::ldb::with(|l| l.failure.take()).flatten() {
                r.error(&format!(
                    "ERR {msg} script: {}, on @user_script:{line}.",
                    String::from_utf8_lossy(sha)
                ));
                return Outcome::Replied;
            }
        }
        out
    }

    /// Runs a library's function with (KEYS, ARGV) as its arguments,
    /// loading the library into this interpreter first if it is new here.
    pub fn call_function(
        &mut self,
        lib: &functions::Library,
        index: usize,
        keys: &[&[u8]],
        argv: &[&[u8]],
        host: &mut dyn Host,
        r: &mut crate::resp::Reply,
    ) -> Outcome {
        if !self.libs.contains_key(&lib.id) {
            if let Err(e) = self.load_library(lib.id, lib.body(), None) {
                r.error_bytes(&[&b"ERR "[..], &e].concat());
                return Outcome::Replied;
            }
        }
        let Some(f) = self
            .libs
            .get(&lib.id)
            .and_then(|v| v.get(index))
            .map(|k| k.id())
        else {
            r.error("ERR Function not found");
            return Outcome::Replied;
        };
        let name = lib.functions[index].name.as_bytes();
        self.exec(f, name, true, (keys, argv), host, r)
    }

    /// Runs a library's code so it registers its functions, which this
    /// interpreter keeps under `id`. `timeout` bounds the run (FUNCTION
    /// LOAD from a client). Errors are Redis's texts, without "ERR ", in
    /// bytes: a compile error quotes the code.
    pub fn load_library(
        &mut self,
        id: u64,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<Registered>, Vec<u8>> {
        let failed = |what: &str, msg: &[u8]| [what.as_bytes(), msg].concat();
        // Measured between two full collections, so what the library
        // keeps is counted and not the garbage of loading it.
        let _ = self.lua.gc_collect();
        let before = self.lua.used_memory();
        let chunk = self
            .load_chunk(body, c"@user_function", &self.fn_env)
            .map_err(|m| failed("Error compiling function: ", &m))?;
        LOAD.with(|l| {
            *l.borrow_mut() = Some(LoadState {
                deadline: timeout.map(|t| Instant::now() + t),
                registered: Vec::new(),
            })
        });
        let result = self.loader.call::<(bool, Value)>(chunk);
        let state = LOAD.with(|l| l.borrow_mut().take());
        let registered = state.map(|s| s.registered).unwrap_or_default();
        let registering = "Error registering functions: ";
        match result {
            Ok((true, _)) => {}
            Ok((false, v)) => return Err(failed(registering, &error_field(&v))),
            Err(e) => return Err(failed(registering, error_text(&e).as_bytes())),
        }
        let (infos, fns): (Vec<Registered>, Vec<RegistryKey>) = registered.into_iter().unzip();
        self.libs.insert(id, fns);
        let _ = self.lua.gc_collect();
        let kept = self.lua.used_memory().saturating_sub(before);
        self.lib_bytes.insert(id, kept);
        Ok(infos)
    }

    /// Compiles `body` as Lua's `luaL_loadbuffer` does, named `name`, with
    /// the scripts' globals as its environment. The error is Lua's message
    /// byte for byte (it quotes the source near the error, which may not
    /// be UTF-8).
    fn load_chunk(
        &self,
        body: &[u8],
        name: &std::ffi::CStr,
        env: &Table,
    ) -> Result<Function, Vec<u8>> {
        // SAFETY: inside mlua's protected call, the closure leaves the
        // chunk (with the scripts' globals as its environment) or Lua's
        // message, then whether it compiled; it holds only references.
        let loaded = unsafe {
            self.lua
                .exec_raw::<(Value, bool)>(env, |l| {
                    use mlua::ffi;
                    let status = ffi::luaL_loadbuffer(
                        l,
                        body.as_ptr() as *const std::os::raw::c_char,
                        body.len(),
                        name.as_ptr(),
                    );
                    if status == 0 {
                        ffi::lua_pushvalue(l, 1);
                        ffi::lua_setfenv(l, -2);
                    }
                    ffi::lua_remove(l, 1);
                    ffi::lua_pushboolean(l, (status == 0) as std::os::raw::c_int);
                })
                .map_err(|e| lua_message(&e).into_bytes())?
        };
        match loaded {
            (Value::Function(f), true) => Ok(f),
            (Value::String(msg), false) => Err(msg.as_bytes().to_vec()),
            _ => Err(b"unknown error".to_vec()),
        }
    }

    /// Drops the libraries no longer in the registry.
    pub fn retain_libraries(&mut self, live: &HashSet<u64>) {
        self.libs.retain(|id, _| live.contains(id));
        self.lib_bytes.retain(|id, _| live.contains(id));
        // Their functions leave the registry now, not when a slot is reused.
        self.lua.expire_registry_values();
    }

    /// Runs the function registry entry `f` (see `compiled`).
    fn exec(
        &mut self,
        f: std::os::raw::c_int,
        name: &[u8],
        as_args: bool,
        (keys, argv): (&[&[u8]], &[&[u8]]),
        host: &mut dyn Host,
        r: &mut crate::resp::Reply,
    ) -> Outcome {
        self.error_counted = false;
        // SAFETY: the lifetime is erased only for the thread-local slot,
        // which is cleared (by `Clear`) before `host` goes out of scope.
        let host: *mut (dyn Host + 'static) = unsafe { std::mem::transmute(host) };
        let mut state = RunState {
            host,
            resp3: false,
            stopped: None,
            buf: std::mem::take(&mut self.spare.0),
            msg: String::new(),
            args: std::mem::take(&mut self.spare.1),
            ranges: std::mem::take(&mut self.spare.2),
        };
        struct Clear;
        impl Drop for Clear {
            fn drop(&mut self) {
                RUN.with(|r| r.set(std::ptr::null_mut()));
            }
        }
        RUN.with(|c| c.set(&mut state as *mut RunState));
        let _clear = Clear;
        let runner = if as_args { &self.caller } else { &self.runner };
        // SAFETY: the closure pushes the function from the registry and
        // two tables of strings and calls the runner, inside mlua's
        // protected call; it holds only references.
        let result = unsafe {
            self.lua.exec_raw::<(bool, Value)>(runner, |l| {
                mlua::ffi::lua_rawgeti(l, mlua::ffi::LUA_REGISTRYINDEX, f as _);
                super::call::push_strings(l, keys);
                super::call::push_strings(l, argv);
                mlua::ffi::lua_call(l, 3, 2);
            })
        };
        // The buffers serve the next run; a huge reply's is not kept.
        if state.buf.capacity() <= SPARE_MAX && state.args.capacity() <= SPARE_MAX {
            self.spare = (
                std::mem::take(&mut state.buf),
                std::mem::take(&mut state.args),
                std::mem::take(&mut state.ranges),
            );
        }
        let stopped = state.stopped.take();
        if let Some(msg) = stopped {
            return Outcome::Stopped(msg);
        }
        let counted = |v: &Value| match v {
            Value::Table(t) => t.raw_get::<bool>(COUNTED).unwrap_or(false),
            _ => false,
        };
        self.error_counted = match &result {
            Ok((true, v)) => {
                counted(v)
                    && matches!(v, Value::Table(t) if t.raw_get::<Value>("err").is_ok_and(|e| !e.is_nil()))
            }
            Ok((false, v)) => counted(v),
            Err(_) => false,
        };
        match result {
            Ok((true, v)) => convert::lua_to_reply(&v, r, state.resp3),
            Ok((false, Value::Table(t))) => {
                // A C string in Redis: it ends at a NUL.
                let msg: Vec<u8> = t
                    .raw_get::<mlua::String>("err")
                    .map(|s| {
                        s.as_bytes()
                            .split(|&c| c == 0)
                            .next()
                            .unwrap_or(&[])
                            .to_vec()
                    })
                    .unwrap_or_else(|_| b"ERR unknown error".to_vec());
                let mut full = msg;
                if let (Ok(src), Ok(line)) = (
                    t.raw_get::<mlua::String>("source"),
                    t.raw_get::<mlua::String>("line"),
                ) {
                    full.extend_from_slice(b" script: ");
                    full.extend_from_slice(name);
                    full.extend_from_slice(b", on ");
                    full.extend_from_slice(&src.as_bytes());
                    full.push(b':');
                    full.extend_from_slice(&line.as_bytes());
                    full.push(b'.');
                }
                r.error_bytes(&full);
            }
            Ok((false, v)) => {
                let msg = match v {
                    Value::String(s) => s.to_string_lossy(),
                    _ => "execution failure".into(),
                };
                r.error(&format!(
                    "ERR Error running script {}, {:.100}",
                    String::from_utf8_lossy(name),
                    msg
                ));
            }
            Err(e) => r.error(&format!("ERR {}", lua_message(&e))),
        }
        // Lua's collector runs a step every 50 runs rather than a full
        // cycle at an unlucky moment (Redis's period).
        self.runs += 1;
        if self.runs.is_multiple_of(50) {
            let _ = self.lua.gc_step_kbytes(50);
        }
        Outcome::Replied
    }

    /// An empty buffer for a run's reply, reused from run to run.
    pub fn take_reply_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare_reply)
    }

    /// Gives back a reply buffer; one that grew huge is dropped.
    pub fn keep_reply_buffer(&mut self, mut b: Vec<u8>) {
        if b.capacity() <= SPARE_MAX {
            b.clear();
            self.spare_reply = b;
        }
    }

    /// Bytes this interpreter holds (INFO's `used_memory_vm_total`).
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Of those, the bytes its function libraries in `live` keep (one
    /// deleted since this interpreter last ran goes at its next run).
    pub fn functions_memory(&self, live: &HashSet<u64>) -> usize {
        self.lib_bytes
            .iter()
            .filter(|(id, _)| live.contains(id))
            .map(|(_, b)| b)
            .sum()
    }

    pub fn compiled_count(&self) -> usize {
        self.compiled.len()
    }
}

/// Every 100,000 instructions: the host may stop the run (SCRIPT KILL,
/// a move off the command thread, shutdown).
fn install_hook(lua: &Lua) {
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(100_000),
        |_, _| match tick_stop() {
            Some(msg) => Err(mlua::Error::external(Stop(msg))),
            None => Ok(VmState::Continue),
        },
    );
}

/// Asks the host whether the run must stop; the reason if so.
fn tick_stop() -> Option<String> {
    with_run(|run| {
        if let Some(msg) = &run.stopped {
            return Some(msg.clone());
        }
        // SAFETY: see `with_run`; the host outlives the run.
        let host = unsafe { &mut *run.host };
        match host.tick() {
            Ok(()) => None,
            Err(msg) => {
                run.stopped = Some(msg.clone());
                Some(msg)
            }
        }
    })
    .flatten()
    .or_else(load_timed_out)
}

/// Where the interpreter keeps the prelude's debugger helpers.
const LDB_HELPERS: &str = "slotkv_ldb_helpers";

/// The hook of a debugged run: every line of the script, and every
/// 100,000 instructions (the host's checks, and the debugger's stop for a
/// script that runs too long without reaching a stop).
fn debug_hook(lua: &Lua, ar: mlua::Debug) -> mlua::Result<VmState> {
    let count = matches!(ar.event(), mlua::DebugEvent::Count);
    if count && super::ldb::with(|l| !l.forked).unwrap_or(true) {
        if let Some(msg) = tick_stop() {
            return Err(mlua::Error::external(Stop(msg)));
        }
    }
    let ours = ar
        .source()
        .short_src
        .is_some_and(|s| s.contains("user_script"));
    if !ours {
        return Ok(VmState::Continue);
    }
    let line = ar.curr_line();
    drop(ar);
    let Some(timeout) = super::ldb::with(|l| l.reach(line, count)).flatten() else {
        return Ok(VmState::Continue);
    };
    let resume = super::ldb::repl(&mut LuaFrame(lua));
    super::ldb::with(|l| l.started = Instant::now());
    match resume {
        super::ldb::Resume::Run => Ok(VmState::Continue),
        super::ldb::Resume::Gone if !timeout => Ok(VmState::Continue),
        super::ldb::Resume::Gone => {
            debug_fail("timeout during Lua debugging with client closing connection")
        }
        super::ldb::Resume::Fail(msg) => debug_fail(msg),
    }
}

/// Ends a debugged run with `msg`, reported at the current line.
fn debug_fail(msg: &str) -> mlua::Result<VmState> {
    super::ldb::with(|l| l.failure = Some((msg.to_string(), l.current)));
    with_run(|r| r.stopped = Some(msg.to_string()));
    Err(mlua::Error::external(Stop(msg.to_string())))
}

/// The paused script, as the debugger's commands read it: through the
/// prelude's helpers, which return the entries to log.
struct LuaFrame<'a>(&'a Lua);

impl LuaFrame<'_> {
    fn helper(&self, name: &str, arg: impl mlua::IntoLuaMulti) {
        let entries = self
            .0
            .named_registry_value::<Table>(LDB_HELPERS)
            .and_then(|t| t.get::<Function>(name))
            .and_then(|f| f.call::<Table>(arg));
        let entries = match entries {
            Ok(t) => t,
            Err(e) => {
                super::ldb::log(format!("<error> {e}").into_bytes());
                return;
            }
        };
        for v in entries.sequence_values::<Value>().flatten() {
            match v {
                Value::String(s) => super::ldb::log(s.as_bytes().to_vec()),
                Value::Integer(n) => {
                    super::ldb::with(|l| l.log_source_line(n as i32));
                }
                Value::Number(n) => {
                    super::ldb::with(|l| l.log_source_line(n as i32));
                }
                Value::Table(t) => {
                    if let Ok(s) = t.raw_get::<mlua::String>(1) {
                        super::ldb::log_trimmed(s.as_bytes().to_vec());
                    }
                }
                _ => {}
            }
        }
    }

    fn with_string(&self, name: &str, b: &[u8]) {
        if let Ok(s) = self.0.create_string(b) {
            self.helper(name, s);
        }
    }
}

impl super::ldb::Frame for LuaFrame<'_> {
    fn print(&mut self, name: &[u8]) {
        self.with_string("print", name);
    }

    fn print_all(&mut self) {
        self.helper("print_all", ());
    }

    fn eval(&mut self, code: &[u8]) {
        self.with_string("eval", code);
    }

    fn redis(&mut self, args: &[Vec<u8>]) {
        let Ok(t) = self.0.create_table() else {
            return;
        };
        for (i, a) in args.iter().enumerate() {
            if let Ok(s) = self.0.create_string(a) {
                let _ = t.raw_set(i + 1, s);
            }
        }
        // The command and its reply are logged as when stepping.
        super::ldb::with(|l| l.step = true);
        self.helper("redis", t);
        super::ldb::with(|l| l.step = false);
    }

    fn trace(&mut self) {
        self.helper("trace", ());
    }
}

/// A library load past its deadline: the load fails with Redis's text.
fn load_timed_out() -> Option<String> {
    LOAD.with(|l| {
        let l = l.borrow();
        let d = l.as_ref()?.deadline?;
        (Instant::now() > d).then(|| "FUNCTION LOAD timeout".to_string())
    })
}

/// The `err` field of a Redis error table, as Redis reports a failed load.
fn error_field(v: &Value) -> Vec<u8> {
    match v {
        Value::Table(t) => t
            .raw_get::<mlua::String>("err")
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_else(|_| b"ERR unknown error".to_vec()),
        Value::String(s) => s.as_bytes().to_vec(),
        _ => b"ERR unknown error".to_vec(),
    }
}

/// A string argument as `lua_isstring` sees one (numbers convert).
fn lua_string(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(n) => Some(lua_number_string(*n as f64).into_bytes()),
        Value::Number(n) => Some(lua_number_string(*n).into_bytes()),
        _ => None,
    }
}

/// `redis.register_function(name, callback)` or
/// `redis.register_function{function_name=…, callback=…, flags=…,
/// description=…}`, only while a library loads.
fn register_function(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    if LOAD.with(|l| l.borrow().is_none()) {
        return Err(raise(
            "redis.register_function can only be called on FUNCTION LOAD command",
        ));
    }
    let (name, desc, callback, flags) = match args.len() {
        1 => named_registration(&args[0])?,
        2 => {
            let Some(name) = lua_string(&args[0]) else {
                return Err(raise(
                    "first argument to redis.register_function must be a string",
                ));
            };
            let Value::Function(f) = &args[1] else {
                return Err(raise(
                    "second argument to redis.register_function must be a function",
                ));
            };
            (name, None, f.clone(), 0)
        }
        _ => {
            return Err(raise(
                "wrong number of arguments to redis.register_function",
            ))
        }
    };
    if !functions::valid_name(&name) {
        return Err(raise(functions::BAD_NAME));
    }
    let name = String::from_utf8_lossy(&name).into_owned();
    LOAD.with(|l| {
        let mut l = l.borrow_mut();
        let Some(state) = l.as_mut() else {
            return Err(raise(
                "redis.register_function can only be called on FUNCTION LOAD command",
            ));
        };
        if state.registered.iter().any(|(r, _)| r.name == name) {
            return Err(raise("Function already exists in the library"));
        }
        let callback = lua.create_registry_value(callback)?;
        state
            .registered
            .push((Registered { name, desc, flags }, callback));
        Ok(())
    })
}

type Registration = (Vec<u8>, Option<Vec<u8>>, Function, u32);

fn named_registration(arg: &Value) -> mlua::Result<Registration> {
    let Value::Table(t) = arg else {
        return Err(raise("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."));
    };
    let (mut name, mut desc, mut callback, mut flags) = (None, None, None, 0u32);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Some(key) = lua_string(&k) else {
            return Err(raise(
                "named argument key given to redis.register_function is not a string",
            ));
        };
        let key = String::from_utf8_lossy(&key).to_ascii_lowercase();
        match key.as_str() {
            "function_name" => {
                match lua_string(&v) {
                    Some(s) => name = Some(s),
                    None => return Err(raise(
                        "function_name argument given to redis.register_function must be a string",
                    )),
                }
            }
            "description" => {
                match lua_string(&v) {
                    Some(s) => desc = Some(s),
                    None => return Err(raise(
                        "description argument given to redis.register_function must be a string",
                    )),
                }
            }
            "callback" => match v {
                Value::Function(f) => callback = Some(f),
                _ => {
                    return Err(raise(
                        "callback argument given to redis.register_function must be a function",
                    ))
                }
            },
            "flags" => {
                let Value::Table(ft) = v else {
                    return Err(raise("flags argument to redis.register_function must be a table representing function flags"));
                };
                flags = 0;
                for i in 1.. {
                    let f: Value = ft.raw_get(i)?;
                    if matches!(f, Value::Nil) {
                        break;
                    }
                    let found = lua_string(&f).and_then(|s| {
                        super::flag::NAMES
                            .iter()
                            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(&s))
                            .map(|(_, b)| *b)
                    });
                    match found {
                        Some(b) => flags |= b,
                        None => return Err(raise("unknown flag given")),
                    }
                }
            }
            _ => return Err(raise("unknown argument given to redis.register_function")),
        }
    }
    let Some(name) = name else {
        return Err(raise(
            "redis.register_function must get a function name argument",
        ));
    };
    let Some(callback) = callback else {
        return Err(raise(
            "redis.register_function must get a callback argument",
        ));
    };
    Ok((name, desc, callback, flags))
}

/// The error a stopped run raises inside Lua.
#[derive(Debug)]
struct Stop(String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

/// Lua's own message for a compile or runtime error, without mlua's
/// decorations.
fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}

/// A Redis error raised from Rust into the script: the handler and our
/// `pcall` read its text back with [`error_text`].
#[derive(Debug)]
struct RedisError {
    msg: String,
    /// A command's error (or refusal) from `redis.call`, already counted
    /// in the error stats.
    counted: bool,
}

impl RedisError {
    fn lua(msg: String, counted: bool) -> mlua::Error {
        mlua::Error::external(RedisError { msg, counted })
    }
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for RedisError {}

/// Raises `msg` ("-CODE text" or a bare text meaning ERR) as Redis does.
fn raise(msg: &str) -> mlua::Error {
    let (code, text) = match msg.strip_prefix('-') {
        Some(rest) => rest.split_once(' ').unwrap_or(("ERR", rest)),
        None => ("ERR", msg),
    };
    let text = text.trim_end_matches(['\r', '\n']);
    RedisError::lua(format!("{code} {text}"), false)
}

/// Whether the error is a command's, already counted in the stats.
fn is_counted(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::CallbackError { cause, .. } => is_counted(cause),
        mlua::Error::WithContext { cause, .. } => is_counted(cause),
        mlua::Error::ExternalError(x) => x.downcast_ref::<RedisError>().is_some_and(|r| r.counted),
        _ => false,
    }
}

/// The message of a Lua-style error raised by a library function.
fn lua_error_message(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { cause, .. } => lua_error_message(cause),
        mlua::Error::WithContext { cause, .. } => lua_error_message(cause),
        mlua::Error::ExternalError(x) => x.downcast_ref::<LuaError>().map(|r| r.0.clone()),
        _ => None,
    }
}

/// Gives a library table's functions Lua's error positions: a failure
/// they raise (a runtime error) reads "user_script:N: msg", naming the
/// line that called them, as `luaL_error` does in C libraries.
pub fn locate_errors(lua: &Lua, t: &Table) -> mlua::Result<()> {
    let mut fns = Vec::new();
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair?;
        if let Value::Function(f) = v {
            fns.push((k, f));
        }
    }
    for (k, f) in fns {
        let w = lua.create_function(move |lua, args: MultiValue| {
            f.call::<MultiValue>(args)
                .map_err(|e| match runtime_message(&e) {
                    Some(m) => lua_error(lua, &m),
                    None => e,
                })
        })?;
        t.raw_set(k, w)?;
    }
    Ok(())
}

fn runtime_message(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { cause, .. } => runtime_message(cause),
        mlua::Error::WithContext { cause, .. } => runtime_message(cause),
        mlua::Error::RuntimeError(m) => Some(m.clone()),
        _ => None,
    }
}

/// The Redis error text of an error raised in a script.
fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        mlua::Error::ExternalError(x) => {
            if let Some(r) = x.downcast_ref::<LuaError>() {
                format!("ERR {}", r.0)
            } else if let Some(r) = x.downcast_ref::<RedisError>() {
                r.msg.clone()
            } else if let Some(s) = x.downcast_ref::<Stop>() {
                s.0.clone()
            } else {
                format!("ERR {x}")
            }
        }
        other => format!("ERR {}", lua_message(other)),
    }
}

/// The field Redis sets on an error table whose error the stats already
/// counted (a command's error, or its refusal, inside the script).
const COUNTED: &str = "ignore_error_stats_update";
pub(super) const COUNTED_C: &std::ffi::CStr = c"ignore_error_stats_update";

/// The Rust half of the `redis` table; the prelude wraps the functions
/// that raise errors, since errors must be Redis error tables.
fn api_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    // SAFETY: both are Lua C functions that follow Lua's calling rules.
    unsafe {
        t.raw_set("call", lua.create_c_function(super::call::call)?)?;
        t.raw_set("pcall", lua.create_c_function(super::call::pcall)?)?;
        t.raw_set("sha1hex", lua.create_c_function(super::call::sha1hex)?)?;
    }
    t.raw_set(
        "setresp",
        lua.create_function(|_, args: MultiValue| {
            if with_run(|_| ()).is_none() {
                return Err(raise(
                    "redis.setresp can only be called inside a script invocation",
                ));
            }
            if args.len() != 1 {
                return Err(raise("redis.setresp() requires one argument."));
            }
            let v = lua_number(&args[0]).unwrap_or(0.0) as i64;
            if v != 2 && v != 3 {
                return Err(raise("RESP version must be 2 or 3."));
            }
            with_run(|r| r.resp3 = v == 3);
            Ok(Value::Nil)
        })?,
    )?;
    t.raw_set(
        "acl_check_cmd",
        lua.create_function(|_, args: MultiValue| {
            if with_run(|_| ()).is_none() {
                return Err(raise(
                    "redis.acl_check_cmd can only be called inside a script invocation",
                ));
            }
            if args.is_empty() {
                return Err(raise(
                    "Please specify at least one argument for this redis lib call",
                ));
            }
            let mut argv: Vec<Vec<u8>> = Vec::with_capacity(args.len());
            for v in args.iter() {
                let mut a = Vec::new();
                match v {
                    Value::String(s) => a.extend_from_slice(&s.as_bytes()),
                    Value::Integer(n) => super::write_g17(*n as f64, &mut a),
                    Value::Number(n) => super::write_g17(*n, &mut a),
                    _ => {
                        return Err(raise(
                            "Lua redis lib command arguments must be strings or integers",
                        ))
                    }
                }
                argv.push(a);
            }
            let refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
            let res = with_run(|r| {
                // SAFETY: see `with_run`.
                unsafe { &mut *r.host }.acl_check(&refs)
            });
            match res {
                Some(Some(allowed)) => Ok(Value::Boolean(allowed)),
                _ => Err(raise("Invalid command passed to redis.acl_check_cmd()")),
            }
        })?,
    )?;
    t.raw_set(
        "set_repl",
        lua.create_function(|_, args: MultiValue| {
            if with_run(|_| ()).is_none() {
                return Err(raise(
                    "redis.set_repl can only be called inside a script invocation",
                ));
            }
            if args.len() != 1 {
                return Err(raise("redis.set_repl() requires two arguments."));
            }
            let v = lua_number(&args[0]).unwrap_or(0.0) as i64;
            if v & !3 != 0 {
                return Err(raise(
                    "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                ));
            }
            with_run(|r| {
                // SAFETY: see `with_run`.
                unsafe { &mut *r.host }.set_repl(v)
            });
            Ok(Value::Nil)
        })?,
    )?;
    t.raw_set(
        "log",
        lua.create_function(|_, args: MultiValue| {
            if args.len() < 2 {
                return Err(raise("redis.log() requires two arguments or more."));
            }
            let Some(level) = lua_number(&args[0]).map(|n| n as i64) else {
                return Err(raise("First argument must be a number (log level)."));
            };
            if !(0..=3).contains(&level) {
                return Err(raise("Invalid debug level."));
            }
            let mut msg = Vec::new();
            for v in args.iter().skip(1) {
                let s = match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Integer(n) => lua_number_string(*n as f64).into_bytes(),
                    Value::Number(n) => lua_number_string(*n).into_bytes(),
                    _ => continue,
                };
                if !msg.is_empty() {
                    msg.push(b' ');
                }
                msg.extend_from_slice(&s);
            }
            with_run(|r| {
                // SAFETY: see `with_run`.
                unsafe { &mut *r.host }.log(level, &msg)
            });
            Ok(Value::Nil)
        })?,
    )?;
    for (k, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        t.raw_set(k, v)?;
    }
    for (k, v) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        t.raw_set(k, v)?;
    }
    t.raw_set("REDIS_VERSION_NUM", 0x0007_000f)?;
    t.raw_set("REDIS_VERSION", "7.0.15")?;
    Ok(t)
}

/// How Lua 5.1 turns a number into a string (`%.14g`), as
/// `lua_tolstring` does for `redis.sha1hex`, `redis.log` and the rest.
pub(crate) fn lua_number_string(n: f64) -> String {
    // Integers of up to 14 digits print whole; -0 keeps its sign.
    if n.fract() == 0.0 && n.abs() < 1e14 && n != 0.0 {
        return itoa::Buffer::new().format(n as i64).to_string();
    }
    if n.is_nan() || n.is_infinite() {
        return super::fmt_g17(n);
    }
    crate::util::format_g(n, 14)
}

/// A Lua-style error raised from Rust, with the caller's position as
/// Lua's own library functions give it.
#[derive(Debug)]
struct LuaError(String);

impl std::fmt::Display for LuaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LuaError {}

pub(crate) fn lua_error(lua: &Lua, msg: &str) -> mlua::Error {
    lua_error_at(lua, 1, msg)
}

/// [`lua_error`] naming the function `level` frames up as the culprit
/// (a library's Lua wrapper sits between it and the script).
pub(crate) fn lua_error_at(lua: &Lua, level: usize, msg: &str) -> mlua::Error {
    let at = position(lua, level);
    mlua::Error::external(LuaError(format!("{at}{msg}")))
}

/// "source:line: " of the function `level` frames up, as `luaL_where`
/// gives it (empty where there is no line).
pub(crate) fn position(lua: &Lua, level: usize) -> String {
    lua.inspect_stack(level)
        .map(|d| {
            let line = d.curr_line();
            let src = d
                .source()
                .short_src
                .map(|s| s.to_string())
                .unwrap_or_default();
            if line > 0 {
                format!("{src}:{line}: ")
            } else {
                String::new()
            }
        })
        .unwrap_or_default()
}

/// luaL_checkint: a number, or a string that reads as one; truncated.
fn int_arg(lua: &Lua, args: &MultiValue, i: usize) -> mlua::Result<i32> {
    let v = args.get(i).cloned().unwrap_or(Value::Nil);
    // Strings convert as Lua converts them (hex and `inf` included).
    let n = match &v {
        Value::String(_) => lua.coerce_number(v.clone())?,
        other => lua_number(other),
    };
    match n {
        // C's conversions: the double to a 64-bit integer, then to `int`.
        Some(n) => Ok(super::structlib::clib::c_f64_to_i64(n) as i32),
        None => Err(lua_error(
            lua,
            &format!(
                "bad argument #{} to '{}' (number expected, got {})",
                i + 1,
                called_name(lua),
                if i >= args.len() {
                    "no value"
                } else {
                    super::structlib::clib::type_name(&v)
                }
            ),
        )),
    }
}

/// The name Lua gives the running C function from its call site, as
/// `luaL_argerror` names it: '?' when its caller is not Lua code (pcall).
pub(crate) fn called_name(lua: &Lua) -> String {
    lua.inspect_stack(0)
        .and_then(|d| d.names().name.map(|n| n.into_owned()))
        .unwrap_or_else(|| "?".into())
}

/// Redis's `math.random`: Lua's own algorithm over Redis's generator.
fn math_random(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::Number> {
    let r = (super::rand48::next() % super::rand48::MAX) as f64 / super::rand48::MAX as f64;
    match args.len() {
        0 => Ok(r),
        1 => {
            let u = int_arg(lua, &args, 0)?;
            if u < 1 {
                return Err(lua_error(
                    lua,
                    &format!(
                        "bad argument #1 to '{}' (interval is empty)",
                        called_name(lua)
                    ),
                ));
            }
            Ok((r * u as f64).floor() + 1.0)
        }
        2 => {
            let l = int_arg(lua, &args, 0)?;
            let u = int_arg(lua, &args, 1)?;
            if l > u {
                return Err(lua_error(
                    lua,
                    &format!(
                        "bad argument #2 to '{}' (interval is empty)",
                        called_name(lua)
                    ),
                ));
            }
            // In C `int` arithmetic, which wraps on x86-64 as here.
            let span = u.wrapping_sub(l).wrapping_add(1);
            Ok((r * span as f64).floor() + l as f64)
        }
        _ => Err(lua_error(lua, "wrong number of arguments")),
    }
}

/// lua_tonumber: a number, or a string that reads as one.
fn lua_number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()),
        _ => None,
    }
}
