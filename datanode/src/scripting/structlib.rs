//! The `struct` library Redis loads into scripts (lua-struct 1.7 as Redis
//! 7.0 vendors it): Lua numbers and strings to binary strings laid out by
//! a format, and back.
//!
//! Format options: `>` `<` endianness, `![n]` largest alignment, `x` a
//! zero byte, `b B h H l L T i[n] I[n]` integers, `f d` floats, `c[n]`
//! fixed-size strings (`c0`: the whole string when packing, the previous
//! number as length when unpacking), `s` zero-terminated strings, spaces
//! ignored. Sizes are those of the C types on the target, as Redis's own
//! build has them (64-bit: `l` and `T` take 8 bytes).
//!
//! The module also holds [`clib`], what both this library and `cmsgpack`
//! use to behave as C functions do towards Lua.

use std::mem::{align_of, size_of};
use std::os::raw::{c_int, c_long};

use mlua::{Lua, Table, Value};

use self::clib::{Args, Results, MAX_C_STACK};

/// The largest integer an `i`/`I` option may ask for.
const MAX_INT_SIZE: usize = 32;

/// `!` without a number: the strictest alignment a C struct may need.
const MAX_ALIGN: usize = if align_of::<f64>() > size_of::<c_int>() {
    align_of::<f64>()
} else {
    size_of::<c_int>()
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

const NATIVE: Endian = if cfg!(target_endian = "little") {
    Endian::Little
} else {
    Endian::Big
};

/// Settings the control options change as a format is read.
struct Header {
    endian: Endian,
    align: usize,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            endian: NATIVE,
            align: 1,
        }
    }
}

/// A format string as the C code walks it: it ends at the first NUL byte.
struct Format<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Format<'a> {
    fn new(s: &'a [u8]) -> Self {
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        Format {
            s: &s[..end],
            at: 0,
        }
    }

    fn next_option(&mut self) -> Option<u8> {
        let c = *self.s.get(self.at)?;
        self.at += 1;
        Some(c)
    }

    /// The decimal number the format has next, or `default` when none.
    fn number(&mut self, default: usize) -> mlua::Result<usize> {
        let mut n: i32 = 0;
        let mut any = false;
        while let Some(&c) = self.s.get(self.at).filter(|c| c.is_ascii_digit()) {
            let d = i32::from(c - b'0');
            if n > i32::MAX / 10 || n * 10 > i32::MAX - d {
                return Err(mlua::Error::runtime("integral size overflow"));
            }
            n = n * 10 + d;
            any = true;
            self.at += 1;
        }
        Ok(if any { n as usize } else { default })
    }
}

/// The size of an option's item; 0 for options that take no alignment.
fn option_size(opt: u8, fmt: &mut Format) -> mlua::Result<usize> {
    Ok(match opt {
        b'b' | b'B' => 1,
        b'h' | b'H' => size_of::<i16>(),
        b'l' | b'L' => size_of::<c_long>(),
        b'T' => size_of::<usize>(),
        b'f' => size_of::<f32>(),
        b'd' => size_of::<f64>(),
        b'x' => 1,
        b'c' => fmt.number(1)?,
        b'i' | b'I' => {
            let n = fmt.number(size_of::<c_int>())?;
            if n > MAX_INT_SIZE {
                return Err(mlua::Error::runtime(format!(
                    "integral size {n} is larger than limit of {MAX_INT_SIZE}"
                )));
            }
            n
        }
        _ => 0,
    })
}

/// Padding bytes before an item of `size` at offset `len`. As in C, a
/// size that is not a power of two gives odd padding rather than an error.
fn padding(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

/// The options that only change settings; anything else is an error.
fn control(lua: &Lua, args: &Args, opt: u8, fmt: &mut Format, h: &mut Header) -> mlua::Result<()> {
    match opt {
        b' ' => {}
        b'>' => h.endian = Endian::Big,
        b'<' => h.endian = Endian::Little,
        b'!' => {
            let a = fmt.number(MAX_ALIGN)?;
            if !a.is_power_of_two() {
                return Err(mlua::Error::runtime(format!(
                    "alignment {a} is not a power of 2"
                )));
            }
            h.align = a;
        }
        _ => {
            // C prints the byte itself, ASCII or not.
            let msg = [&b"invalid format option '"[..], &[opt], b"'"].concat();
            return Err(args.arg_error_bytes(lua, 1, &msg));
        }
    }
    Ok(())
}

fn is_integer_option(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

/// `n` as the C code stores it in an `unsigned long`: negative numbers
/// through `long`, the others directly, both as x86-64 converts.
fn to_c_ulong(n: f64) -> u64 {
    if n < 0.0 {
        clib::c_f64_to_i64(n) as u64
    } else {
        clib::c_f64_to_u64(n)
    }
}

/// `size` bytes of `value`; bytes past the eighth are zero, as shifting
/// a 64-bit value leaves them.
fn put_integer(out: &mut Vec<u8>, value: u64, endian: Endian, size: usize) {
    let byte = |i: usize| if i < 8 { (value >> (8 * i)) as u8 } else { 0 };
    match endian {
        Endian::Little => out.extend((0..size).map(byte)),
        Endian::Big => out.extend((0..size).rev().map(byte)),
    }
}

/// The number `bytes` hold. Only the last eight bytes read survive in the
/// 64-bit accumulator, and the sign mask shifts by `size * 8 - 1` modulo
/// 64, as the x86-64 shift instruction does with the C code's shift.
fn get_integer(bytes: &[u8], endian: Endian, signed: bool) -> f64 {
    let fold = |l: u64, b: &u8| (l << 8) | u64::from(*b);
    let l = match endian {
        Endian::Big => bytes.iter().fold(0, fold),
        Endian::Little => bytes.iter().rev().fold(0, fold),
    };
    if !signed {
        return l as f64;
    }
    let shift = ((bytes.len() as i64) * 8 - 1) & 63;
    let mask = u64::MAX << shift;
    let l = if l & mask != 0 { l | mask } else { l };
    l as i64 as f64
}

fn float_bytes(out: &mut Vec<u8>, endian: Endian, be: &[u8], le: &[u8]) {
    out.extend_from_slice(if endian == Endian::Big { be } else { le });
}

/// `struct.pack(fmt, ...)`.
fn pack(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    let fmt = args.check_string(lua, 1)?;
    let fmt = fmt.as_bytes();
    let mut fmt = Format::new(&fmt);
    // C pushes a nil after the arguments: a missing one reads as nil.
    let args = args.with_nil_mark();
    let mut h = Header::default();
    let mut arg = 2;
    // The output's length is the C code's running total size: every
    // option adds exactly its size.
    let mut out = Vec::new();
    while let Some(opt) = fmt.next_option() {
        let size = option_size(opt, &mut fmt)?;
        let pad = padding(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            _ if is_integer_option(opt) => {
                let n = args.check_number(lua, arg)?;
                arg += 1;
                put_integer(&mut out, to_c_ulong(n), h.endian, size);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = args.check_number(lua, arg)? as f32;
                arg += 1;
                float_bytes(&mut out, h.endian, &f.to_be_bytes(), &f.to_le_bytes());
            }
            b'd' => {
                let d = args.check_number(lua, arg)?;
                arg += 1;
                float_bytes(&mut out, h.endian, &d.to_be_bytes(), &d.to_le_bytes());
            }
            b'c' | b's' => {
                let s = args.check_string(lua, arg)?;
                let s = s.as_bytes();
                arg += 1;
                let size = if size == 0 { s.len() } else { size };
                if s.len() < size {
                    // C names the argument after the string: it has
                    // already moved on when it checks.
                    return Err(args.arg_error(lua, arg, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => control(lua, &args, opt, &mut fmt, &mut h)?,
        }
    }
    Results::one(lua, lua.create_string(&out)?)
}

/// Where `struct.unpack` keeps its results: in a table, so any number of
/// strings can come back without holding a Rust reference to each.
struct Unpacked<'a> {
    lua: &'a Lua,
    t: Table,
    n: usize,
    /// The last result, for `c0`.
    last: Value,
}

impl Unpacked<'_> {
    fn push(&mut self, v: Value) -> mlua::Result<()> {
        self.n += 1;
        self.t.raw_set(self.n, &v)?;
        self.last = v;
        Ok(())
    }

    fn push_bytes(&mut self, b: &[u8]) -> mlua::Result<()> {
        let s = self.lua.create_string(b)?;
        self.push(Value::String(s))
    }

    /// Drops the last result and gives its number, as `c0` takes it.
    fn pop_length(&mut self) -> mlua::Result<Option<u64>> {
        if self.n == 0 {
            return Ok(None);
        }
        let Some(len) = clib::to_number(self.lua, &self.last)? else {
            return Ok(None);
        };
        self.t.raw_set(self.n, Value::Nil)?;
        self.n -= 1;
        self.last = match self.n {
            0 => Value::Nil,
            n => self.t.raw_get(n)?,
        };
        Ok(Some(clib::c_f64_to_u64(len)))
    }
}

/// `struct.unpack(fmt, data [, pos])`: the values, then the position
/// after them.
fn unpack(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    let fmt = args.check_string(lua, 1)?;
    let fmt = fmt.as_bytes();
    let mut fmt = Format::new(&fmt);
    let data = args.check_string(lua, 2)?;
    let data = data.as_bytes();
    let ld = data.len();
    // A `size_t` in C: negative positions wrap around to huge ones.
    let mut pos = args.opt_integer(lua, 3, 1)? as u64 as usize;
    if pos == 0 {
        return Err(args.arg_error(lua, 3, "offset must be 1 or greater"));
    }
    pos -= 1;
    let too_short = || args.arg_error(lua, 2, "data string too short");
    let mut res = Unpacked {
        lua,
        t: lua.create_table()?,
        n: 0,
        last: Value::Nil,
    };
    let mut h = Header::default();
    while let Some(opt) = fmt.next_option() {
        let mut size = option_size(opt, &mut fmt)?;
        pos = pos.wrapping_add(padding(pos, &h, opt, size));
        if size > ld || pos > ld - size {
            return Err(too_short());
        }
        // C keeps the results on its stack, two more slots at a time.
        if args.count() + res.n + 2 > MAX_C_STACK {
            return Err(clib::overflow("too many results"));
        }
        match opt {
            _ if is_integer_option(opt) => {
                let n = get_integer(&data[pos..pos + size], h.endian, opt.is_ascii_lowercase());
                res.push(Value::Number(n))?;
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[pos..pos + 4]
                    .try_into()
                    .map_err(mlua::Error::external)?;
                let f = match h.endian {
                    Endian::Big => f32::from_be_bytes(b),
                    Endian::Little => f32::from_le_bytes(b),
                };
                res.push(Value::Number(f64::from(f)))?;
            }
            b'd' => {
                let b: [u8; 8] = data[pos..pos + 8]
                    .try_into()
                    .map_err(mlua::Error::external)?;
                let d = match h.endian {
                    Endian::Big => f64::from_be_bytes(b),
                    Endian::Little => f64::from_le_bytes(b),
                };
                res.push(Value::Number(d))?;
            }
            b'c' => {
                if size == 0 {
                    let Some(len) = res.pop_length()? else {
                        return Err(mlua::Error::runtime("format 'c0' needs a previous size"));
                    };
                    size = usize::try_from(len).unwrap_or(usize::MAX);
                    if size > ld || pos > ld - size {
                        return Err(too_short());
                    }
                }
                res.push_bytes(&data[pos..pos + size])?;
            }
            b's' => {
                let Some(len) = data[pos..].iter().position(|&c| c == 0) else {
                    return Err(mlua::Error::runtime("unfinished string in data"));
                };
                res.push_bytes(&data[pos..pos + len])?;
                size = len + 1;
            }
            _ => control(lua, args, opt, &mut fmt, &mut h)?,
        }
        pos = pos.wrapping_add(size);
    }
    // `lua_pushinteger` of a `size_t`: wraps to negative past i64::MAX.
    res.push(Value::Number(pos.wrapping_add(1) as i64 as f64))?;
    Ok(Results::range(res.t, 1, res.n))
}

/// `struct.size(fmt)`: the bytes `fmt` packs to; formats holding strings
/// of no fixed size are errors.
fn size(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    let fmt = args.check_string(lua, 1)?;
    let fmt = fmt.as_bytes();
    let mut fmt = Format::new(&fmt);
    let mut h = Header::default();
    let mut pos: usize = 0;
    while let Some(opt) = fmt.next_option() {
        let size = option_size(opt, &mut fmt)?;
        pos = pos.wrapping_add(padding(pos, &h, opt, size));
        if opt == b's' {
            return Err(args.arg_error(lua, 1, "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(args.arg_error(lua, 1, "option 'c0' has no fixed size"));
        }
        // Unknown letters and digits count as nothing here, unlike in
        // pack and unpack.
        if !opt.is_ascii_alphanumeric() {
            control(lua, args, opt, &mut fmt, &mut h)?;
        }
        pos = pos.wrapping_add(size);
    }
    Results::one(lua, pos as i64 as f64)
}

/// Builds the `struct` table.
pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    clib::register(lua, &t, "pack", pack)?;
    clib::register(lua, &t, "unpack", unpack)?;
    clib::register(lua, &t, "size", size)?;
    Ok(t)
}

/// What the C libraries Redis loads into Lua see of a call, for their
/// Rust ports: arguments, results and errors as the Lua C API gives them.
///
/// Each library function is a small Lua function around the Rust one. It
/// hands over the arguments as a count and a table, and spreads the
/// results from a table. mlua would otherwise turn every string or table
/// passing through into a reference in a Lua stack of 8000 slots, which a
/// call with thousands of them could exhaust (a panic).
pub(crate) mod clib {
    use mlua::{Function, IntoLua, Lua, Table, Value};

    /// `LUAI_MAXCSTACK`: the stack slots a C function may use. The C
    /// libraries fail with "stack overflow (...)" beyond it; we count the
    /// slots they would use to fail at the same point.
    pub const MAX_C_STACK: usize = 8000;

    /// The Lua side of every library function. `unpack(t, i, j)` needs
    /// stack room for its three arguments and its results, so two results
    /// come out before it: 7999, C's most, then fit.
    const SHIM: &str = r#"
local core, select, unpack, error = ...
return function(...)
  local t, i, j = core(select('#', ...), {...})
  if not t then error(i, 0) end
  if j - i < 2 then return unpack(t, i, j) end
  return t[i], t[i + 1], unpack(t, i + 2, j)
end
"#;

    /// Stack levels from the Rust core up to the script: the core (0), the
    /// shim (1), the C trampoline (2), then whoever called the library
    /// function (3).
    const TRAMPOLINE_LEVEL: usize = 2;
    pub(crate) const CALLER_LEVEL: usize = 3;

    pub type Core = fn(&Lua, &Args) -> mlua::Result<Results>;

    /// Sets `lib[name]` to a C function running `core` through the shim.
    ///
    /// The library function itself must be a C function, as in Redis: a
    /// script's tail call (`return cmsgpack.pack()`) to a Lua function
    /// replaces the script's frame, and its errors would lose their
    /// `user_script:N:` position; a C function runs on top of it.
    pub fn register(lua: &Lua, lib: &Table, name: &'static str, core: Core) -> mlua::Result<()> {
        let g = lua.globals();
        let select: Function = g.raw_get("select")?;
        let unpack: Function = g.raw_get("unpack")?;
        let error: Function = g.raw_get("error")?;
        let core = lua.create_function(move |lua, (n, t): (usize, Table)| {
            match core(lua, &Args { n, top: n, t }) {
                Ok(r) => Ok((Value::Table(r.t), Value::Integer(r.first), r.last)),
                // luaL_error's message, raised by the shim as the string
                // C raises: its bytes are the script's, UTF-8 or not.
                Err(e) => match raised_message(lua, &e) {
                    Some(m) => Ok((
                        Value::Boolean(false),
                        Value::String(lua.create_string(m)?),
                        0,
                    )),
                    None => Err(e),
                },
            }
        })?;
        let shim: Function = lua
            .load(SHIM)
            // Skipped by the scripts' error handler, like our own code.
            .set_name("=redis_lib")
            .call((core, select, unpack, error))?;
        // SAFETY: the closure only pops the shim it is given and pushes
        // one C closure holding it, inside mlua's protected call.
        let f: Function =
            unsafe { lua.exec_raw(shim, |l| mlua::ffi::lua_pushcclosure(l, trampoline, 1))? };
        lib.raw_set(name, f)
    }

    /// The message, with the calling line's position, of an error a
    /// library raised as `luaL_error` does; `None` for other errors.
    fn raised_message(lua: &Lua, e: &mlua::Error) -> Option<Vec<u8>> {
        let msg = match e {
            mlua::Error::RuntimeError(m) => m.as_bytes(),
            mlua::Error::ExternalError(x) => &x.downcast_ref::<Raised>()?.0,
            _ => return None,
        };
        let mut out = super::super::engine::position(lua, CALLER_LEVEL).into_bytes();
        out.extend_from_slice(msg);
        Some(out)
    }

    /// A `luaL_error` message that may hold any bytes (C formats the
    /// script's own bytes into some).
    #[derive(Debug)]
    pub struct Raised(pub Vec<u8>);

    impl std::fmt::Display for Raised {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&String::from_utf8_lossy(&self.0))
        }
    }

    impl std::error::Error for Raised {}

    /// Calls the shim (upvalue 1) with this call's arguments and returns
    /// all its results. Nothing here has a destructor, so a Lua error
    /// unwinding (longjmp) through this frame is sound.
    unsafe extern "C-unwind" fn trampoline(l: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
        use mlua::ffi;
        let n = ffi::lua_gettop(l);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
        ffi::lua_insert(l, 1);
        ffi::lua_call(l, n, ffi::LUA_MULTRET);
        ffi::lua_gettop(l)
    }

    /// A library function's results: `t[first..=last]`.
    pub struct Results {
        t: Table,
        first: i64,
        last: i64,
    }

    impl Results {
        pub fn one(lua: &Lua, v: impl IntoLua) -> mlua::Result<Self> {
            let t = lua.create_table()?;
            t.raw_set(1, v)?;
            Ok(Results::range(t, 1, 1))
        }

        /// `last` may be `first - 1`: no results.
        pub fn range(t: Table, first: usize, last: usize) -> Self {
            Results {
                t,
                first: first as i64,
                last: last as i64,
            }
        }
    }

    /// A call's arguments, 1-based as in the C API.
    pub struct Args {
        n: usize,
        /// The C function's stack top: past it an argument is "no value".
        top: usize,
        t: Table,
    }

    impl Args {
        /// How many arguments the call had (`lua_gettop` on entry).
        pub fn count(&self) -> usize {
            self.n
        }

        /// The same arguments with a nil pushed after them.
        pub fn with_nil_mark(&self) -> Args {
            Args {
                n: self.n,
                top: self.n + 1,
                t: self.t.clone(),
            }
        }

        /// Argument `i`; numbers come as `Value::Number`, as C sees them.
        pub fn get(&self, i: usize) -> mlua::Result<Value> {
            if i == 0 || i > self.n {
                return Ok(Value::Nil);
            }
            Ok(match self.t.raw_get::<Value>(i)? {
                Value::Integer(n) => Value::Number(n as f64),
                v => v,
            })
        }

        /// `luaL_checknumber`: numbers and strings Lua reads as numbers.
        pub fn check_number(&self, lua: &Lua, i: usize) -> mlua::Result<f64> {
            let v = self.get(i)?;
            to_number(lua, &v)?.ok_or_else(|| self.type_error(lua, i, &v, "number"))
        }

        /// `luaL_checkinteger`: a number truncated as C converts it.
        pub fn check_integer(&self, lua: &Lua, i: usize) -> mlua::Result<i64> {
            self.check_number(lua, i).map(c_f64_to_i64)
        }

        /// `luaL_optinteger`: `default` when the argument is absent or nil.
        pub fn opt_integer(&self, lua: &Lua, i: usize, default: i64) -> mlua::Result<i64> {
            match self.get(i)? {
                Value::Nil => Ok(default),
                _ => self.check_integer(lua, i),
            }
        }

        /// `luaL_checklstring`: strings, and numbers as Lua formats them.
        pub fn check_string(&self, lua: &Lua, i: usize) -> mlua::Result<mlua::String> {
            let v = self.get(i)?;
            match v {
                Value::String(s) => Ok(s),
                Value::Number(_) => lua
                    .coerce_string(v.clone())?
                    .ok_or_else(|| self.type_error(lua, i, &v, "string")),
                _ => Err(self.type_error(lua, i, &v, "string")),
            }
        }

        fn type_error(&self, lua: &Lua, i: usize, v: &Value, expected: &str) -> mlua::Error {
            let got = if i > self.top {
                "no value"
            } else {
                type_name(v)
            };
            self.arg_error(lua, i, &format!("{expected} expected, got {got}"))
        }

        /// `luaL_argerror`: names the function as its caller calls it.
        pub fn arg_error(&self, lua: &Lua, narg: usize, msg: &str) -> mlua::Error {
            self.arg_error_bytes(lua, narg, msg.as_bytes())
        }

        /// [`Args::arg_error`] with a message of any bytes.
        pub fn arg_error_bytes(&self, lua: &Lua, narg: usize, msg: &[u8]) -> mlua::Error {
            // Lua names the library function from the calling code; under
            // `pcall` and other C callers it has no name.
            let caller = lua.inspect_stack(TRAMPOLINE_LEVEL).and_then(|d| {
                let names = d.names();
                let method = names.name_what == Some("method");
                names.name.map(|n| (n.into_owned(), method))
            });
            let (name, method) = caller.unwrap_or_else(|| ("?".to_string(), false));
            let head = match (method, narg) {
                (true, 1) => format!("calling '{name}' on bad self ("),
                // `self` is not counted.
                (true, _) => format!("bad argument #{} to '{name}' (", narg as i64 - 1),
                (false, _) => format!("bad argument #{narg} to '{name}' ("),
            };
            let mut m = head.into_bytes();
            m.extend_from_slice(msg);
            m.push(b')');
            mlua::Error::external(Raised(m))
        }
    }

    /// `luaL_typename`.
    pub(crate) fn type_name(v: &Value) -> &'static str {
        match v {
            Value::Nil => "nil",
            Value::Boolean(_) => "boolean",
            Value::LightUserData(_) | Value::UserData(_) | Value::Error(_) => "userdata",
            Value::Integer(_) | Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Table(_) => "table",
            Value::Function(_) => "function",
            Value::Thread(_) => "thread",
            other => other.type_name(),
        }
    }

    /// `lua_tonumber`, `None` where `lua_isnumber` is false.
    pub fn to_number(lua: &Lua, v: &Value) -> mlua::Result<Option<f64>> {
        Ok(match v {
            Value::Integer(i) => Some(*i as f64),
            Value::Number(n) => Some(*n),
            Value::String(_) => lua.coerce_number(v.clone())?,
            _ => None,
        })
    }

    const TWO_63: f64 = 9_223_372_036_854_775_808.0;

    /// A C cast of a double to a 64-bit integer on x86-64: truncation,
    /// and i64::MIN for NaN and numbers out of range.
    pub fn c_f64_to_i64(n: f64) -> i64 {
        if n.is_nan() || !(-TWO_63..TWO_63).contains(&n) {
            i64::MIN
        } else {
            n as i64
        }
    }

    /// A C cast of a double to a 64-bit unsigned as GCC compiles it for
    /// x86-64: numbers from 2^63 up go through the signed conversion
    /// less 2^63, so 2^64 and more come out 0, and NaN 2^63.
    pub fn c_f64_to_u64(n: f64) -> u64 {
        if n >= TWO_63 {
            (c_f64_to_i64(n - TWO_63) as u64) ^ (1 << 63)
        } else {
            c_f64_to_i64(n) as u64
        }
    }

    /// `luaL_checkstack` failing.
    pub fn overflow(what: &str) -> mlua::Error {
        mlua::Error::runtime(format!("stack overflow ({what})"))
    }

    /// An error Lua itself raises inside a C function (`luaG_runerror`),
    /// which carries no script position, unlike `luaL_error`'s: kept apart
    /// from runtime errors so that positions are added only to those.
    pub fn unlocated(msg: &str) -> mlua::Error {
        mlua::Error::external(Unlocated(msg.to_string()))
    }

    #[derive(Debug)]
    struct Unlocated(String);

    impl std::fmt::Display for Unlocated {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Unlocated {}
}

#[cfg(test)]
pub(crate) mod tests {
    use mlua::Lua;

    /// A Lua with `struct`, a `hex` helper and `fmt`, which prints all its
    /// arguments (numbers with 17 digits).
    fn lua() -> Lua {
        let lua = Lua::new();
        let t = super::open(&lua).expect("struct");
        lua.globals().set("struct", t).expect("set");
        lua.load(
            r#"
            function hex(s) local h = {} for i = 1, #s do
              h[i] = string.format('%02x', s:byte(i)) end return table.concat(h) end
            function fmt(...)
              local r = {n = select('#', ...), ...} local o = {}
              for i = 1, r.n do o[i] = type(r[i]) == "number"
                and string.format("%.17g", r[i]) or tostring(r[i]) end
              return table.concat(o, " ")
            end"#,
        )
        .exec()
        .expect("helpers");
        lua
    }

    fn eval(lua: &Lua, code: &str) -> String {
        lua.load(format!("return {code}"))
            .eval::<String>()
            .expect(code)
    }

    /// The message of the error `code` raises (shared with cmsgpack's
    /// tests).
    pub(crate) fn error(lua: &Lua, code: &str) -> String {
        let e = lua.load(code).exec().expect_err(code);
        let m = message(&e);
        // The calling line's position, as luaL_error adds it, is the
        // differential tests' business; here only the message counts.
        match m.split_once("]:1: ") {
            Some((_, rest)) => rest.to_string(),
            None => m,
        }
    }

    pub(crate) fn message(e: &mlua::Error) -> String {
        match e {
            // A Lua error's message, without the traceback mlua adds.
            mlua::Error::RuntimeError(m) => match m.split_once("\nstack traceback:") {
                Some((m, _)) => m.to_string(),
                None => m.clone(),
            },
            mlua::Error::CallbackError { cause, .. } => message(cause),
            mlua::Error::ExternalError(x) => x.to_string(),
            other => other.to_string(),
        }
    }

    // Expected values below come from redis-server 7.0.15.

    #[test]
    fn pack_lays_out_bytes_as_redis_does() {
        let lua = lua();
        let cases = [
            (
                r#"">bBhHlLTiI", -1, 255, -2, 65535, -3, 2^64-1, 5, -4, 4294967295"#,
                "fffffffefffffffffffffffffffd00000000000000000000000000000005fffffffcffffffff",
            ),
            (
                r#""<bBhHlLTiI", -1, 255, -2, 65535, -3, 2^63, 5, -4, 4294967295"#,
                "fffffefffffffdffffffffffffff00000000000000800500000000000000fcffffffffffffff",
            ),
            (
                r#""<i16>i16", -1, -2"#,
                "ffffffffffffffff00000000000000000000000000000000fffffffffffffffe",
            ),
            (r#""<i3>i3i0", -1, 65536*3+2, 7"#, "ffffff030002"),
            (r#"">L<L", 2^64, 1/0"#, "00000000000000000000000000000000"),
            (
                r#"">L<L>l", 0/0, -1/0, 0/0"#,
                "800000000000000000000000000000808000000000000000",
            ),
            (
                r#"">L>l", 2^63+2^20, 1e30"#,
                "80000000001000000000000000000000",
            ),
            (
                r#"">L>l", -1e30, -2^63"#,
                "80000000000000008000000000000000",
            ),
            (
                r#""!4bi!2bi!bi", 1, 2, 3, 4, 5, 6"#,
                "0100000002000000030004000000050006000000",
            ),
            (
                r#""!bd!4bd", 1, 2, 3, 4"#,
                "01000000000000000000000000000040030000000000000000001040",
            ),
            (r#""!8bi3bh", 1, 2, 3, 4"#, "01000002000003000400"),
            (
                r#"">fd<fd", 1.5, 0.1, 1.5, 0.1"#,
                "3fc000003fb999999999999a0000c03f9a9999999999b93f",
            ),
            (
                r#""c3c0sc", "abcdef", "xy", "z\0w", "q""#,
                "61626378797a00770071",
            ),
            (r#""xbxxb", 1, 2"#, "0001000002"),
            (r#""b\0b", 1, 2"#, "01"),
            (r#"" b  b ", 1, 2"#, "0102"),
            (r#""s", 12.5"#, "31322e3500"),
            (r#""b", "0x10""#, "10"),
            (r#""b", " 12 ""#, "0c"),
            (r#""B", 255.9"#, "ff"),
            (r#""b", -1.9"#, "ff"),
            (r#""!", 1"#, ""),
            (r#""<d", 1e-300"#, "59f3f8c21f6ea501"),
        ];
        for (args, want) in cases {
            assert_eq!(
                eval(&lua, &format!("hex(struct.pack({args}))")),
                want,
                "{args}"
            );
        }
        assert_eq!(eval(&lua, "#struct.pack('i32', -1)"), "32");
    }

    #[test]
    fn unpack_reads_values_as_redis_does() {
        let lua = lua();
        let cases = [
            (
                r#"">bBhHlLTiI", struct.pack(">bBhHlLTiI", -1, 255, -2, 65535, -3, 2^64-1, 5, -4, 4294967295)"#,
                "-1 255 -2 65535 -3 0 5 -4 4294967295 39",
            ),
            (r#""<i16", string.rep("\255", 16)"#, "-1 17"),
            (
                r#""<I16", string.rep("\255", 16)"#,
                "1.8446744073709552e+19 17",
            ),
            (r#"">i9", "\1"..string.rep("\255", 8)"#, "-1 10"),
            (r#""<i0", """#, "0 1"),
            (
                r#""<i3<i5", "\255\255\255\255\255\255\255\127""#,
                "-1 549755813887 9",
            ),
            (
                r#""<L<l", string.rep("\255", 8) .. "\0\0\0\0\0\0\0\128""#,
                "1.8446744073709552e+19 -9.2233720368547758e+18 17",
            ),
            (
                r#"">fd<fd", struct.pack(">fd<fd", 1.5, 0.1, 0.1, 1e-300)"#,
                "1.5 0.10000000000000001 0.10000000149011612 1e-300 25",
            ),
            (r#""bc0", "\3abcd""#, "abc 5"),
            (r#""c2c0", "10abcdefghijklm""#, "abcdefghij 13"),
            (r#""c4c0", "0x02abcdefghijklm""#, "ab 7"),
            (r#""bbc0", "\1\2ab""#, "1 ab 5"),
            (r#""bc0", "\0abc""#, " 2"),
            (r#""bsb", "\1hello\0\2""#, "1 hello 2 9"),
            (r#""", "\1\2", -1"#, "-1"),
            (r#""", "\1\2", 4"#, "4"),
            (r#""!4bi", "\1\0\0\0\2\0\0\0""#, "1 2 9"),
            (r#""x", "a""#, "2"),
            (r#""b", "\1\2", "2""#, "2 3"),
            (r#""b", "\1", 1.9"#, "1 2"),
            (r#""!8bi3bh", "\1\0\0\2\0\0\3\0\4\0""#, "1 2 3 4 11"),
            (r#""d", struct.pack("d", 0/0)"#, "-nan 9"),
        ];
        for (args, want) in cases {
            assert_eq!(
                eval(&lua, &format!("fmt(struct.unpack({args}))")),
                want,
                "{args}"
            );
        }
    }

    #[test]
    fn size_counts_as_redis_does() {
        let lua = lua();
        assert_eq!(
            eval(
                &lua,
                r#"fmt(struct.size("bhilLTfdx"), struct.size("!bhilLTfdx"),
                   struct.size("c10zq5"), struct.size("!bd"), struct.size("<>!2"),
                   struct.size("i3i"), struct.size("!4i3i"))"#
            ),
            "44 49 10 16 0 7 12"
        );
    }

    #[test]
    fn errors_read_as_redis_reports_them() {
        let lua = lua();
        let cases = [
            (
                "struct.pack('i33', 1)",
                "integral size 33 is larger than limit of 32",
            ),
            ("struct.pack('i99999999999', 1)", "integral size overflow"),
            ("struct.pack('!3b', 1)", "alignment 3 is not a power of 2"),
            ("struct.pack('!0b', 1)", "alignment 0 is not a power of 2"),
            (
                "struct.pack('y', 1)",
                "bad argument #1 to 'pack' (invalid format option 'y')",
            ),
            (
                "struct.pack('5', 1)",
                "bad argument #1 to 'pack' (invalid format option '5')",
            ),
            (
                "struct.pack(12, 1)",
                "bad argument #1 to 'pack' (invalid format option '1')",
            ),
            (
                "struct.pack('b')",
                "bad argument #2 to 'pack' (number expected, got nil)",
            ),
            (
                "struct.pack('b', nil)",
                "bad argument #2 to 'pack' (number expected, got nil)",
            ),
            (
                "struct.pack('b', {})",
                "bad argument #2 to 'pack' (number expected, got table)",
            ),
            (
                "struct.pack('c5', 'ab')",
                "bad argument #3 to 'pack' (string too short)",
            ),
            (
                "struct.pack('bc5', 1, 'ab')",
                "bad argument #4 to 'pack' (string too short)",
            ),
            (
                "struct.pack('c', nil)",
                "bad argument #2 to 'pack' (string expected, got nil)",
            ),
            (
                "struct.pack()",
                "bad argument #1 to 'pack' (string expected, got no value)",
            ),
            (
                "struct.size('s')",
                "bad argument #1 to 'size' (option 's' has no fixed size)",
            ),
            (
                "struct.size('c0')",
                "bad argument #1 to 'size' (option 'c0' has no fixed size)",
            ),
            (
                "struct.size('*')",
                "bad argument #1 to 'size' (invalid format option '*')",
            ),
            (
                "struct.size('i40')",
                "integral size 40 is larger than limit of 32",
            ),
            (
                "struct.size()",
                "bad argument #1 to 'size' (string expected, got no value)",
            ),
            (
                "local s = struct.size s('s')",
                "bad argument #1 to 's' (option 's' has no fixed size)",
            ),
            (
                "struct:size('s')",
                "calling 'size' on bad self (string expected, got table)",
            ),
            (
                "struct.unpack('b')",
                "bad argument #2 to 'unpack' (string expected, got no value)",
            ),
            (
                "struct.unpack('b', '\\1', 'x')",
                "bad argument #3 to 'unpack' (number expected, got string)",
            ),
            (
                "struct.unpack()",
                "bad argument #1 to 'unpack' (string expected, got no value)",
            ),
            (
                "struct.unpack('Y', 'a')",
                "bad argument #1 to 'unpack' (invalid format option 'Y')",
            ),
            (
                "struct.unpack('c0', 'abc')",
                "format 'c0' needs a previous size",
            ),
            ("struct.unpack('s', 'hello')", "unfinished string in data"),
            (
                "struct.unpack('b', '')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('bx', 'a')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('bb', '\\1\\2', 2)",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                " struct.unpack(' ', '\\1\\2', 4)",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('b', '\\1\\2', 2^53)",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('c2c0', '-1abc')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('bc0', '\\2a')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('bb', '\\1\\2', 0)",
                "bad argument #3 to 'unpack' (offset must be 1 or greater)",
            ),
        ];
        for (code, want) in cases {
            assert_eq!(error(&lua, code), want, "{code}");
        }
    }

    #[test]
    fn unpack_fails_past_the_c_stack_as_redis_does() {
        let lua = lua();
        let count = |code: &str| eval(&lua, &format!("tostring(select('#', {code}))"));
        // Thousands of strings must not exhaust mlua's references either.
        assert_eq!(
            count("struct.unpack(string.rep('c1', 7997), string.rep('a', 7997))"),
            "7998"
        );
        assert_eq!(
            error(
                &lua,
                "struct.unpack(string.rep('c1', 7998), string.rep('a', 7998))"
            ),
            "stack overflow (too many results)"
        );
        assert_eq!(
            count("struct.unpack(string.rep('b', 7996), string.rep('a', 7997), 1)"),
            "7997"
        );
        assert_eq!(
            error(
                &lua,
                "struct.unpack(string.rep('b', 7997), string.rep('a', 7997), 1)"
            ),
            "stack overflow (too many results)"
        );
    }
}
