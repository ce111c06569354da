//! The `cmsgpack` library Redis loads into scripts (lua-cmsgpack 0.4.0):
//! Lua values to MessagePack and back, byte for byte as the C library
//! does it in Redis's 64-bit Lua 5.1.
//!
//! Lua 5.1 numbers are all doubles: integral ones encode as the smallest
//! MessagePack integer, the others as a float when that loses nothing,
//! else as a double. A table whose keys are exactly 1..n encodes as an
//! array, any other as a map in `next` order. Tables nested deeper than
//! 16 levels encode as nil, which also ends cyclic tables.

use mlua::{Lua, Table, Value};

use super::structlib::clib::{self, Args, Results, MAX_C_STACK};

const MAX_NESTING: usize = 16;

/// Builds the `cmsgpack` table.
pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    // The C order of insertion, which decides the order `pairs` walks.
    clib::register(lua, &t, "pack", pack)?;
    clib::register(lua, &t, "unpack", unpack)?;
    clib::register(lua, &t, "unpack_one", unpack_one)?;
    clib::register(lua, &t, "unpack_limit", unpack_limit)?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

/// Fails as `luaL_checkstack(L, extra, what)` does with `used` slots taken.
fn check_stack(used: usize, extra: usize, what: &str) -> mlua::Result<()> {
    if used + extra > MAX_C_STACK {
        return Err(clib::overflow(what));
    }
    Ok(())
}

/// `cmsgpack.pack(...)`: the encodings of all arguments, concatenated.
fn pack(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    let n = args.count();
    if n == 0 {
        return Err(args.arg_error(lua, 0, "MessagePack pack needs input."));
    }
    // C asks for as many free stack slots as there are arguments.
    if n + n > MAX_C_STACK {
        return Err(args.arg_error(lua, 0, "Too many arguments for MessagePack pack."));
    }
    let mut enc = Encoder { out: Vec::new() };
    for i in 1..=n {
        // The stack then holds the arguments, one encoding per argument
        // done, and a copy of this one.
        enc.value(&args.get(i)?, 0, n + i)?;
    }
    Results::one(lua, lua.create_string(&enc.out)?)
}

struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    /// Encodes `v`, a table `level` deep; `sp` is the C stack height
    /// while it does, for the same stack overflows.
    fn value(&mut self, v: &Value, level: usize, sp: usize) -> mlua::Result<()> {
        match v {
            Value::String(s) => self.bytes(&s.as_bytes()),
            Value::Boolean(b) => self.out.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Integer(i) => self.number(*i as f64),
            Value::Number(n) => self.number(*n),
            Value::Table(t) if level < MAX_NESTING => self.table(t, level, sp)?,
            _ => self.out.push(0xc0),
        }
        Ok(())
    }

    fn table(&mut self, t: &Table, level: usize, sp: usize) -> mlua::Result<()> {
        check_stack(sp, 2, "in function table_is_an_array")?;
        if is_array(t)? {
            check_stack(sp, 1, "in function mp_encode_lua_table_as_array")?;
            let len = t.raw_len();
            self.header(len, 0x90, 0xdc);
            for j in 1..=len {
                let v = t.raw_get(j)?;
                self.value(&v, level + 1, sp + 1)?;
            }
        } else {
            check_stack(sp, 3, "in function mp_encode_lua_table_as_map")?;
            let mut len = 0;
            t.for_each(|_: Value, _: Value| {
                len += 1;
                Ok(())
            })?;
            self.header(len, 0x80, 0xde);
            t.for_each(|k: Value, v: Value| {
                // C encodes a copy of the key above the pair, then the
                // value above the key.
                self.value(&k, level + 1, sp + 3)?;
                self.value(&v, level + 1, sp + 2)
            })?;
        }
        Ok(())
    }

    fn number(&mut self, n: f64) {
        if is_int64(n) {
            self.integer(n as i64);
        } else {
            self.double(n);
        }
    }

    fn integer(&mut self, n: i64) {
        let out = &mut self.out;
        match n {
            0..=127 => out.push(n as u8),
            128..=0xff => out.extend([0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend((n as u32).to_be_bytes());
            }
            0x1_0000_0000.. => {
                out.push(0xcf);
                out.extend(n.to_be_bytes());
            }
            -32..=-1 => out.push(n as u8),
            -128..=-33 => out.extend([0xd0, n as u8]),
            -32768..=-129 => {
                out.push(0xd1);
                out.extend((n as i16).to_be_bytes());
            }
            -2_147_483_648..=-32769 => {
                out.push(0xd2);
                out.extend((n as i32).to_be_bytes());
            }
            _ => {
                out.push(0xd3);
                out.extend(n.to_be_bytes());
            }
        }
    }

    /// A float when converting to one and back gives `d` again.
    fn double(&mut self, d: f64) {
        let f = d as f32;
        if f64::from(f) == d {
            self.out.push(0xca);
            self.out.extend(f.to_be_bytes());
        } else {
            self.out.push(0xcb);
            self.out.extend(d.to_be_bytes());
        }
    }

    /// Strings: fixstr, then str8, str16 and str32.
    fn bytes(&mut self, s: &[u8]) {
        let len = s.len();
        match len {
            0..=31 => self.out.push(0xa0 | len as u8),
            32..=0xff => self.out.extend([0xd9, len as u8]),
            0x100..=0xffff => {
                self.out.push(0xda);
                self.out.extend((len as u16).to_be_bytes());
            }
            _ => {
                self.out.push(0xdb);
                self.out.extend((len as u32).to_be_bytes());
            }
        }
        self.out.extend_from_slice(s);
    }

    /// An array or map header: `fix | n` up to 15, then 16- and 32-bit
    /// counts (`wide`, `wide + 1`).
    fn header(&mut self, n: usize, fix: u8, wide: u8) {
        match n {
            0..=15 => self.out.push(fix | n as u8),
            16..=0xffff => {
                self.out.push(wide);
                self.out.extend((n as u16).to_be_bytes());
            }
            _ => {
                self.out.push(wide + 1);
                self.out.extend((n as u32).to_be_bytes());
            }
        }
    }
}

/// Whether `n` survives a trip through a C `int64_t` (x86-64's
/// conversion: NaN and out of range give i64::MIN).
fn is_int64(n: f64) -> bool {
    !n.is_infinite() && clib::c_f64_to_i64(n) as f64 == n
}

/// Keys exactly 1..n: positive integral numbers fitting a C `int`, as
/// many as the largest.
fn is_array(t: &Table) -> mlua::Result<bool> {
    let (mut count, mut max) = (0i64, 0i64);
    // Stops at the first other key.
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return Ok(false),
        };
        if n <= 0.0 || n > f64::from(i32::MAX) || n.trunc() != n {
            return Ok(false);
        }
        max = max.max(n as i64);
        count += 1;
    }
    Ok(max == count)
}

/// `cmsgpack.unpack(s)`: every value `s` holds.
fn unpack(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    // The arguments all stay on the C stack.
    unpack_full(lua, args, 0, 0, args.count())
}

/// `cmsgpack.unpack_one(s [, offset])`: the next offset (-1 at the end),
/// then the value at `offset`.
fn unpack_one(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    let offset = args.opt_integer(lua, 2, 0)?;
    unpack_full(lua, args, 1, offset, 1)
}

/// `cmsgpack.unpack_limit(s, limit [, offset])`: the next offset (-1 at
/// the end), then up to `limit` values from `offset`.
fn unpack_limit(lua: &Lua, args: &Args) -> mlua::Result<Results> {
    let limit = args.check_integer(lua, 2)?;
    let offset = args.opt_integer(lua, 3, 0)?;
    unpack_full(lua, args, limit, offset, 1)
}

/// Decodes up to `limit` values from `offset`: all of them, with no
/// offset returned, when both are 0. `base` is the C stack height before
/// the results.
fn unpack_full(
    lua: &Lua,
    args: &Args,
    limit: i64,
    offset: i64,
    base: usize,
) -> mlua::Result<Results> {
    let s = args.check_string(lua, 1)?;
    let s = s.as_bytes();
    let len = s.len();
    let decode_all = limit == 0 && offset == 0;
    // The C messages print `int` casts, and the length for the limit.
    if offset < 0 || limit < 0 {
        return Err(mlua::Error::runtime(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, len as i32
        )));
    }
    if offset as u64 > len as u64 {
        return Err(mlua::Error::runtime(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, len as i32
        )));
    }
    let limit = if decode_all {
        i64::from(i32::MAX)
    } else {
        limit
    };
    let mut dec = Decoder {
        lua,
        data: &s,
        pos: offset as usize,
        slots: lua.create_table()?,
        base,
        frames: Vec::new(),
    };
    let mut count = 0;
    while dec.pos < len && (count as i64) < limit {
        match dec.value(base + count) {
            Ok(()) => count += 1,
            Err(Stop::Eof) => return Err(mlua::Error::runtime("Missing bytes in input.")),
            Err(Stop::BadFormat) => return Err(mlua::Error::runtime("Bad data format in input.")),
            Err(Stop::Lua(e)) => return Err(e),
        }
    }
    if decode_all {
        return Ok(Results::range(dec.slots, 2, count + 1));
    }
    check_stack(base + count, 1, "in function mp_unpack_full")?;
    let next = if dec.pos == len { -1 } else { dec.pos as i64 };
    dec.slots.raw_set(1, next)?;
    Ok(Results::range(dec.slots, 1, count + 1))
}

/// Why decoding stopped.
enum Stop {
    Eof,
    BadFormat,
    Lua(mlua::Error),
}

impl From<mlua::Error> for Stop {
    fn from(e: mlua::Error) -> Self {
        Stop::Lua(e)
    }
}

/// A table being filled.
enum Frame {
    Array {
        at: usize,
        left: usize,
        next: i64,
    },
    Map {
        at: usize,
        left: usize,
        has_key: bool,
    },
}

impl Frame {
    /// The table's stack position.
    fn at(&self) -> usize {
        match self {
            Frame::Array { at, .. } | Frame::Map { at, .. } => *at,
        }
    }

    fn is_full(&self) -> bool {
        match self {
            Frame::Array { left, .. } | Frame::Map { left, .. } => *left == 0,
        }
    }
}

/// `lua_settable`'s own errors, for keys no table can hold.
fn check_key(key: &Value) -> Result<(), Stop> {
    match key {
        Value::Nil => Err(Stop::Lua(clib::unlocated("table index is nil"))),
        Value::Number(n) if n.is_nan() => Err(Stop::Lua(clib::unlocated("table index is NaN"))),
        _ => Ok(()),
    }
}

/// A decoded item: a finished value, or a table to fill first.
enum Item {
    Done(Value),
    Open(Frame),
}

/// Decodes without recursion, keeping the tables being filled and their
/// pending keys in `slots` at their C stack positions: the results land
/// where C leaves them, and nesting thousands deep holds no Rust
/// references. Slot index `i` is stack position `base + i - 1`; index 1
/// is left for the offset.
struct Decoder<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
    slots: Table,
    base: usize,
    frames: Vec<Frame>,
}

impl Decoder<'_> {
    fn slot(&self, at: usize) -> usize {
        at - self.base + 1
    }

    /// Decodes one whole value onto stack height `height`.
    fn value(&mut self, height: usize) -> Result<(), Stop> {
        let mut height = height;
        loop {
            let v = match self.item(height)? {
                Item::Done(v) => v,
                Item::Open(frame) if frame.is_full() => {
                    self.slots.raw_get(self.slot(frame.at()))?
                }
                Item::Open(frame) => {
                    self.frames.push(frame);
                    height = self.next_height();
                    continue;
                }
            };
            match self.finish(v, height)? {
                Some(next) => height = next,
                None => return Ok(()),
            }
        }
    }

    /// Stores the value decoded at `height` in its table, and each table
    /// that completes in its own: the stack height of the next item, or
    /// `None` once a top-level value is done (stored as a result).
    fn finish(&mut self, mut v: Value, mut height: usize) -> Result<Option<usize>, Stop> {
        while let Some(frame) = self.frames.last_mut() {
            let at = frame.at();
            let table_slot = at - self.base + 1;
            match frame {
                Frame::Map { has_key, .. } if !*has_key => {
                    *has_key = true;
                    self.slots.raw_set(table_slot + 1, v)?;
                    return Ok(Some(at + 1));
                }
                Frame::Map { left, has_key, .. } => {
                    let key_slot = table_slot + 1;
                    let key = self.slots.raw_get(key_slot)?;
                    check_key(&key)?;
                    let t: Table = self.slots.raw_get(table_slot)?;
                    t.raw_set(key, v)?;
                    *has_key = false;
                    *left -= 1;
                }
                Frame::Array { left, next, .. } => {
                    let t: Table = self.slots.raw_get(table_slot)?;
                    t.raw_set(*next, v)?;
                    *next += 1;
                    *left -= 1;
                }
            }
            if !frame.is_full() {
                return Ok(Some(self.next_height()));
            }
            self.frames.pop();
            v = self.slots.raw_get(table_slot)?;
            height = at - 1;
        }
        self.slots.raw_set(self.slot(height + 1), v)?;
        Ok(None)
    }

    /// The stack height the next item of the innermost table decodes at:
    /// above the table, the array index or the map key.
    fn next_height(&self) -> usize {
        match self.frames.last() {
            Some(Frame::Array { at, .. }) => at + 1,
            Some(Frame::Map { at, has_key, .. }) => at + usize::from(*has_key),
            None => self.base,
        }
    }

    fn need(&self, n: usize) -> Result<&[u8], Stop> {
        self.data
            .get(self.pos..)
            .filter(|rest| rest.len() >= n)
            .map(|rest| &rest[..n])
            .ok_or(Stop::Eof)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let b: [u8; N] = self.need(N)?.try_into().map_err(|_| Stop::Eof)?;
        self.pos += N;
        Ok(b)
    }

    /// A string of `len` bytes after a header of `hdr` bytes.
    fn string(&mut self, hdr: usize, len: usize) -> Result<Item, Stop> {
        let s = self.need(hdr.saturating_add(len))?;
        let s = self.lua.create_string(&s[hdr..])?;
        self.pos += hdr + len;
        Ok(Item::Done(Value::String(s)))
    }

    /// A new table at stack position `at` (arrays check one slot more, as
    /// C does before filling them).
    fn open(&mut self, at: usize, len: usize, array: bool) -> Result<Item, Stop> {
        if array {
            check_stack(at, 1, "in function mp_decode_to_lua_array")?;
        }
        self.slots
            .raw_set(self.slot(at), self.lua.create_table()?)?;
        Ok(Item::Open(if array {
            Frame::Array {
                at,
                left: len,
                next: 1,
            }
        } else {
            Frame::Map {
                at,
                left: len,
                has_key: false,
            }
        }))
    }

    /// Decodes the item at the cursor with the C stack at `height`.
    fn item(&mut self, height: usize) -> Result<Item, Stop> {
        let tag = self.need(1)?[0];
        check_stack(
            height,
            1,
            "too many return values at once; use unpack_one or unpack_limit instead.",
        )?;
        let num = |n: f64| Ok(Item::Done(Value::Number(n)));
        let at = height + 1;
        match tag {
            0xcc => num(f64::from(self.take::<2>()?[1])),
            0xd0 => num(f64::from(self.take::<2>()?[1] as i8)),
            0xcd => {
                let b = self.take::<3>()?;
                num(f64::from(u16::from_be_bytes([b[1], b[2]])))
            }
            0xd1 => {
                let b = self.take::<3>()?;
                num(f64::from(i16::from_be_bytes([b[1], b[2]])))
            }
            0xce => num(f64::from(u32::from_be_bytes(self.word()?))),
            0xd2 => num(f64::from(i32::from_be_bytes(self.word()?))),
            // Pushed as a signed 64-bit integer: from 2^63 up, negative.
            0xcf => num(i64::from_be_bytes(self.dword()?) as f64),
            0xd3 => num(i64::from_be_bytes(self.dword()?) as f64),
            0xc0 | 0xc2 | 0xc3 => {
                self.pos += 1;
                Ok(Item::Done(match tag {
                    0xc0 => Value::Nil,
                    t => Value::Boolean(t == 0xc3),
                }))
            }
            0xca => num(f64::from(f32::from_be_bytes(self.word()?))),
            0xcb => num(f64::from_be_bytes(self.dword()?)),
            0xd9 => {
                let len = self.need(2)?[1];
                self.string(2, usize::from(len))
            }
            0xda => {
                let b = self.need(3)?;
                self.string(3, usize::from(u16::from_be_bytes([b[1], b[2]])))
            }
            0xdb => {
                let len = u32::from_be_bytes(self.word()?);
                self.string(0, len as usize)
            }
            0xdc | 0xde => {
                let b = self.take::<3>()?;
                self.open(
                    at,
                    usize::from(u16::from_be_bytes([b[1], b[2]])),
                    tag == 0xdc,
                )
            }
            0xdd | 0xdf => {
                let len = u32::from_be_bytes(self.word()?);
                self.open(at, len as usize, tag == 0xdd)
            }
            0x00..=0x7f => {
                self.pos += 1;
                num(f64::from(tag))
            }
            0xe0..=0xff => {
                self.pos += 1;
                num(f64::from(tag as i8))
            }
            0xa0..=0xbf => self.string(1, usize::from(tag & 0x1f)),
            // fixmap 0x80..=0x8f, fixarray 0x90..=0x9f
            0x80..=0x9f => {
                self.pos += 1;
                self.open(at, usize::from(tag & 0x0f), tag & 0xf0 == 0x90)
            }
            _ => Err(Stop::BadFormat),
        }
    }

    /// The 4 bytes after the tag, tag consumed.
    fn word(&mut self) -> Result<[u8; 4], Stop> {
        let b = self.take::<5>()?;
        Ok([b[1], b[2], b[3], b[4]])
    }

    /// The 8 bytes after the tag, tag consumed.
    fn dword(&mut self) -> Result<[u8; 8], Stop> {
        let b = self.take::<9>()?;
        Ok([b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]])
    }
}

#[cfg(test)]
mod tests {
    use mlua::Lua;

    /// A Lua with `cmsgpack` and a `hex` helper, as scripts see them.
    fn lua() -> Lua {
        let lua = Lua::new();
        let t = super::open(&lua).expect("cmsgpack");
        lua.globals().set("cmsgpack", t).expect("set");
        lua.load(
            "function hex(s) local h = {} for i = 1, #s do \
             h[i] = string.format('%02x', s:byte(i)) end return table.concat(h) end",
        )
        .exec()
        .expect("hex");
        lua
    }

    fn eval(lua: &Lua, code: &str) -> String {
        lua.load(code).eval::<String>().expect(code)
    }

    /// The hex of `cmsgpack.pack(<args>)`.
    fn packed(lua: &Lua, args: &str) -> String {
        eval(lua, &format!("return hex(cmsgpack.pack({args}))"))
    }

    use crate::scripting::structlib::tests::{error, message};

    // Expected bytes below come from redis-server 7.0.15.

    #[test]
    fn numbers_encode_as_redis_does() {
        let lua = lua();
        assert_eq!(packed(&lua, "0.1"), "cb3fb999999999999a");
        assert_eq!(packed(&lua, "-1099511627776"), "d3ffffff0000000000");
        assert_eq!(
            packed(&lua, "0,127,128,255,256,65535,65536,4294967295,4294967296"),
            "007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000"
        );
        assert_eq!(
            packed(
                &lua,
                "-1,-32,-33,-128,-129,-32768,-32769,-2147483648,-2147483649"
            ),
            "ffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffff"
        );
        // Lua 5.1 folds -0.0 into the constant 0, so 1/0 here is -inf.
        assert_eq!(
            packed(
                &lua,
                "1.5,-0.0,1/0,-1/0,0/0,2^63,-2^63,2^64,1e300,1e-20,3.4e38"
            ),
            "ca3fc0000000caff800000ca7f800000cbfff8000000000000ca5f000000\
             d38000000000000000ca5f800000cb7e37e43c8800759ccb3bc79ca10c924223\
             cb47eff933c78cdfad"
        );
        assert_eq!(
            packed(&lua, "2^53+1, 9007199254740993, 0.5, 1e-45, 2^-149"),
            "cf0020000000000000cf0020000000000000ca3f000000cb3696d601ad376ab9ca00000001"
        );
        assert_eq!(
            packed(&lua, "-2^63-2048, 2^63-1024"),
            "cbc3e0000000000001cf7ffffffffffffc00"
        );
        // Numbers too small for mlua to show exactly still encode exactly.
        assert_eq!(
            packed(&lua, "{1e-300}, {x=2^-60}, 1e-300, -2^-100"),
            "91cb01a56e1fc2f8f35981a178ca21800000cb01a56e1fc2f8f359ca8d800000"
        );
    }

    #[test]
    fn strings_and_scalars_encode_as_redis_does() {
        let lua = lua();
        assert_eq!(packed(&lua, "nil, true, false"), "c0c3c2");
        assert_eq!(packed(&lua, "'1', '', '\\0'"), "a131a0a100");
        assert_eq!(
            packed(&lua, "string.rep('a', 31), string.rep('b', 32)"),
            format!("bf{}d920{}", "61".repeat(31), "62".repeat(32))
        );
        let head = |n: usize, bytes: usize| {
            eval(
                &lua,
                &format!("return hex(cmsgpack.pack(string.rep('x', {n})):sub(1, {bytes}))"),
            )
        };
        assert_eq!(head(255, 4), "d9ff7878");
        assert_eq!(head(256, 4), "da010078");
        assert_eq!(head(65535, 4), "daffff78");
        assert_eq!(head(65536, 6), "db0001000078");
        // Functions and threads have no encoding: nil.
        assert_eq!(
            packed(&lua, "cmsgpack.pack, coroutine.create(function() end)"),
            "c0c0"
        );
    }

    #[test]
    fn tables_encode_as_redis_does() {
        let lua = lua();
        assert_eq!(packed(&lua, "{1,2,{a=1}}"), "93010281a16101");
        assert_eq!(
            packed(&lua, "{}, {[1]=1,[3]=3}, {[0]=1}, {[1.5]=1}, {a=1,b=2,c=3}"),
            "90820101030381000181ca3fc000000183a16101a16303a16202"
        );
        assert_eq!(packed(&lua, "{10,20,nil,40}"), "83010a02140428");
        assert_eq!(packed(&lua, "{nil,nil,3}"), "810303");
        assert_eq!(
            packed(&lua, "{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}"),
            "dc00100102030405060708090a0b0c0d0e0f10"
        );
        assert_eq!(packed(&lua, "{a={b={c={}}}}"), "81a16181a16281a16390");
        assert_eq!(packed(&lua, "{[true]=1,[{}]=2}"), "829002c301");
        assert_eq!(packed(&lua, "{[2^31-1]=1}"), "81ce7fffffff01");
        assert_eq!(packed(&lua, "{[-1]=1}"), "81ff01");
        assert_eq!(packed(&lua, "{['1']=1, [2]=2}"), "82a131010202");
        assert_eq!(packed(&lua, "{1, 2, x = 3}"), "8301010202a17803");
        assert_eq!(packed(&lua, "{[1e-300]=1}"), "81cb01a56e1fc2f8f35901");
        assert_eq!(
            packed(&lua, "{[0]=1, [1e-300]=2, [-2^-60]=3, x=4}"),
            "840001cb01a56e1fc2f8f35902caa180000003a17804"
        );
        // The library's own table: its fields in Redis's order.
        assert_eq!(
            eval(&lua, "return hex(cmsgpack:pack())"),
            "88ac5f4445534352495054494f4ed9244d6573736167655061636b204320696d70\
             6c656d656e746174696f6e20666f72204c7561a47061636bc0a55f4e414d45a8636d\
             73677061636ba6756e7061636bc0aa5f434f50595249474854d928436f7079726967\
             68742028432920323031322c2053616c7661746f72652053616e66696c6970706fa8\
             5f56455253494f4eb26c75612d636d73677061636b20302e342e30aa756e7061636b\
             5f6f6e65c0ac756e7061636b5f6c696d6974c0"
        );
    }

    #[test]
    fn circular_tables_stop_at_depth_16() {
        let lua = lua();
        let code = "local a = {x=nil,y=5} local b = {x=a} a['x'] = b
            local encoded = cmsgpack.pack(a)
            local re = cmsgpack.unpack(encoded)
            assert(re.x.x.y == re.y)
            assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.y == re.y)
            assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x)
            assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x == nil)
            return hex(encoded)";
        assert_eq!(
            eval(&lua, code),
            "82a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a178\
             81a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a179\
             05a17881a178c0"
        );
    }

    #[test]
    fn round_trips_match_redis_smoke_test() {
        let lua = lua();
        let code = r#"
            local str_lt_32 = string.rep("x", 30)
            local str_lt_255 = string.rep("x", 250)
            local str_lt_65535 = string.rep("x", 65530)
            local str_long = string.rep("x", 100000)
            local array_big = {}
            for i = 1, 100000 do array_big[i] = i end
            local map_big = {}
            for i = 1, 100000 do map_big[tostring(i)] = i end
            local some_map = {
                s1 = str_lt_32, s2 = str_lt_255, s3 = str_lt_65535, s4 = str_long,
                d1 = 0.1, i1 = 1, i2 = 250, i3 = 65530, i4 = 100000, i5 = 2^40,
                i6 = -1, i7 = -120, i8 = -32000, i9 = -1200000, i10 = -2^40,
                a1 = {1, 2, 3, 4, 5}, a2 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                13, 14, 15, 16, 17, 18}, a3 = array_big, m1 = {a = 1, b = 2},
                m2 = map_big, b1 = false, b2 = true, n = nil,
            }
            local encoded = cmsgpack.pack(some_map)
            local decoded = cmsgpack.unpack(encoded)
            for k, v in pairs(some_map) do
                if type(v) ~= "table" then assert(decoded[k] == v, k) end
            end
            assert(#decoded.a3 == 100000 and decoded.a3[100000] == 100000)
            assert(decoded.m2["99999"] == 99999)
            local offset, one = cmsgpack.unpack_one(encoded, 0)
            assert(offset == -1 and one.s4 == str_long)

            local multi = cmsgpack.pack(str_lt_32, str_lt_255, str_lt_65535, str_long)
            local offset, obj = cmsgpack.unpack_limit(multi, 1, 0)
            assert(obj == str_lt_32)
            offset, obj = cmsgpack.unpack_limit(multi, 1, offset)
            assert(obj == str_lt_255)
            offset, obj = cmsgpack.unpack_limit(multi, 1, offset)
            assert(obj == str_lt_65535)
            offset, obj = cmsgpack.unpack_limit(multi, 1, offset)
            assert(obj == str_long)
            assert(offset == -1)
            return "ok"
        "#;
        assert_eq!(eval(&lua, code), "ok");
    }

    #[test]
    fn values_decode_as_redis_does() {
        let lua = lua();
        let values = |args: &str| {
            eval(
                &lua,
                &format!(
                    "local r = {{n = select('#', {args}), {args}}} local o = {{}}
                     for i = 1, r.n do o[i] = type(r[i]) == 'number'
                       and string.format('%.17g', r[i]) or tostring(r[i]) end
                     return table.concat(o, ' ')"
                ),
            )
        };
        assert_eq!(
            values("cmsgpack.unpack(cmsgpack.pack(1.5, 2^-149, 0.1, -0.0, 1e300))"),
            "1.5 1.4012984643248171e-45 0.10000000000000001 0 1.0000000000000001e+300"
        );
        assert_eq!(
            values(r"cmsgpack.unpack('\204\255\208\128\205\255\255\209\128\0')"),
            "255 -128 65535 -32768"
        );
        assert_eq!(
            values(r"cmsgpack.unpack('\206\255\255\255\255\210\128\0\0\0\224')"),
            "4294967295 -2147483648 -32"
        );
        // uint64 comes back through a signed integer.
        assert_eq!(
            values(r"cmsgpack.unpack('\207\255\255\255\255\255\255\255\255')"),
            "-1"
        );
        assert_eq!(
            values(r"cmsgpack.unpack('\207\128\0\0\0\0\0\0\1')"),
            "-9.2233720368547758e+18"
        );
        assert_eq!(values(r"cmsgpack.unpack('\1\2\3')"), "1 2 3");
        assert_eq!(values("cmsgpack.unpack('')"), "");
        assert_eq!(values("cmsgpack.unpack(12)"), "49 50");
        assert_eq!(values(r"cmsgpack.unpack('\192\194\195')"), "nil false true");
        assert_eq!(values(r"cmsgpack.unpack_one('\1\2\3')"), "1 1");
        assert_eq!(values(r"cmsgpack.unpack_one('\1\2\3', 2)"), "-1 3");
        assert_eq!(values(r"cmsgpack.unpack_one('\1\2\3', 3)"), "-1");
        assert_eq!(values(r"cmsgpack.unpack_one('\1\2\3', '1')"), "2 2");
        assert_eq!(values("cmsgpack.unpack_one('')"), "-1");
        assert_eq!(values(r"cmsgpack.unpack_limit('\1\2\3', 2)"), "2 1 2");
        assert_eq!(values(r"cmsgpack.unpack_limit('\1\2\3', 0)"), "1 2 3");
        assert_eq!(values(r"cmsgpack.unpack_limit('\1\2\3\4', 2, 1)"), "3 2 3");
        assert_eq!(values(r"cmsgpack.unpack_limit('\1\2\3\4', 0, 1)"), "1");
        assert_eq!(
            values(r"cmsgpack.unpack_limit('\1\2\3\4', 5, 0)"),
            "-1 1 2 3 4"
        );
        assert_eq!(
            eval(
                &lua,
                r"local t = cmsgpack.unpack('\130\1\2\161a\145\3')
                  return t[1] .. ' ' .. t.a[1]"
            ),
            "2 3"
        );
        assert_eq!(
            eval(
                &lua,
                r"return cmsgpack.unpack('\129\203\1\165\110\31\194\248\243\89\1')[1e-300]"
            ),
            "1"
        );
        assert_eq!(
            eval(
                &lua,
                "return cmsgpack._NAME .. '|' .. cmsgpack._VERSION .. '|' .. \
                 cmsgpack._COPYRIGHT .. '|' .. cmsgpack._DESCRIPTION"
            ),
            "cmsgpack|lua-cmsgpack 0.4.0|Copyright (C) 2012, Salvatore Sanfilippo|\
             MessagePack C implementation for Lua"
        );
    }

    #[test]
    fn errors_read_as_redis_reports_them() {
        let lua = lua();
        let cases = [
            (
                "cmsgpack.pack()",
                "bad argument #0 to 'pack' (MessagePack pack needs input.)",
            ),
            (
                "local p = cmsgpack.pack p()",
                "bad argument #0 to 'p' (MessagePack pack needs input.)",
            ),
            (
                "cmsgpack.unpack()",
                "bad argument #1 to 'unpack' (string expected, got no value)",
            ),
            (
                "cmsgpack.unpack({})",
                "bad argument #1 to 'unpack' (string expected, got table)",
            ),
            (r"cmsgpack.unpack('\196')", "Bad data format in input."),
            (r"cmsgpack.unpack('\193')", "Bad data format in input."),
            (r"cmsgpack.unpack('\1\193')", "Bad data format in input."),
            (r"cmsgpack.unpack('\205\1')", "Missing bytes in input."),
            (r"cmsgpack.unpack('\147\1\2')", "Missing bytes in input."),
            (
                r"cmsgpack.unpack('\219\0\0\0\5abc')",
                "Missing bytes in input.",
            ),
            (r"cmsgpack.unpack('\218\0\5abc')", "Missing bytes in input."),
            (r"cmsgpack.unpack('\217\5abc')", "Missing bytes in input."),
            (r"cmsgpack.unpack('\165abc')", "Missing bytes in input."),
            (r"cmsgpack.unpack('\129\192')", "Missing bytes in input."),
            (r"cmsgpack.unpack('\129\192\1')", "table index is nil"),
            (
                r"cmsgpack.unpack('\129\203\255\248\0\0\0\0\0\0\1')",
                "table index is NaN",
            ),
            (
                r"cmsgpack.unpack_one('\1\2\3', 4)",
                "Start offset 4 greater than input length 3.",
            ),
            (
                r"cmsgpack.unpack_one('\1\2\3', -1)",
                "Invalid request to unpack with offset of -1 and limit of 3.",
            ),
            (
                r"cmsgpack.unpack_limit('\1\2\3', -5, 1)",
                "Invalid request to unpack with offset of 1 and limit of 3.",
            ),
            (
                r"cmsgpack.unpack_one('\1\2', 4294967297)",
                "Start offset 1 greater than input length 2.",
            ),
            (
                r"cmsgpack.unpack_one('\1\2', -4294967297)",
                "Invalid request to unpack with offset of -1 and limit of 2.",
            ),
            (
                r"cmsgpack.unpack_limit('\1\2\3')",
                "bad argument #2 to 'unpack_limit' (number expected, got no value)",
            ),
            (
                r"cmsgpack.unpack_one('\1\2\3', 'x')",
                "bad argument #2 to 'unpack_one' (number expected, got string)",
            ),
        ];
        for (code, want) in cases {
            assert_eq!(error(&lua, code), want, "{code}");
        }
    }

    #[test]
    fn stack_limits_fail_where_c_does() {
        let lua = lua();
        let overflow = |what: &str| format!("stack overflow ({what})");
        let too_many =
            overflow("too many return values at once; use unpack_one or unpack_limit instead.");
        let count = |code: &str| eval(&lua, &format!("return tostring(select('#', {code}))"));
        // Results: strings too, which must not exhaust mlua's references.
        assert_eq!(count(r"cmsgpack.unpack(string.rep('\160', 7999))"), "7999");
        assert_eq!(
            error(&lua, r"cmsgpack.unpack(string.rep('\1', 8000))"),
            too_many
        );
        assert_eq!(count(r"cmsgpack.unpack(string.rep('\1', 7998), 1)"), "7998");
        assert_eq!(
            error(&lua, r"cmsgpack.unpack(string.rep('\1', 7999), 1)"),
            too_many
        );
        assert_eq!(
            count(r"cmsgpack.unpack_limit(string.rep('\160', 8000), 7998)"),
            "7999"
        );
        assert_eq!(
            error(&lua, r"cmsgpack.unpack_limit(string.rep('\1', 8000), 7999)"),
            overflow("in function mp_unpack_full")
        );
        // Nesting: arrays take two slots a level, maps as keys one.
        let deep = |code: &str| eval(&lua, &format!("return type(cmsgpack.unpack({code}))"));
        assert_eq!(deep(r"string.rep('\145', 3999) .. '\1'"), "table");
        assert_eq!(
            error(&lua, r"cmsgpack.unpack(string.rep('\145', 4000) .. '\1')"),
            overflow("in function mp_decode_to_lua_array")
        );
        assert_eq!(deep(r"string.rep('\129\1', 3999) .. '\1'"), "table");
        assert_eq!(
            error(&lua, r"cmsgpack.unpack(string.rep('\129\1', 4000) .. '\1')"),
            too_many
        );
        assert_eq!(
            error(
                &lua,
                r"cmsgpack.unpack(string.rep('\129', 7998) .. '\1' .. string.rep('\1', 7998))"
            ),
            too_many
        );
        assert_eq!(
            eval(
                &lua,
                r"local t = cmsgpack.unpack(string.rep('\129', 7000) .. '\1' .. string.rep('\1', 7000))
                  for i = 1, 6999 do t = next(t) end return tostring(next(t))"
            ),
            "1"
        );
        // Packing: the arguments, the encodings so far and the tables.
        let pack_len = |fill: usize, last: &str| {
            let code = format!(
                "local t = {{}} for i = 1, {fill} do t[i] = i end t[{fill} + 1] = {last}
                 return tostring(#cmsgpack.pack(unpack(t)))"
            );
            lua.load(code).eval::<String>().map_err(|e| {
                let m = message(&e);
                match m.split_once("]:2: ") {
                    Some((_, rest)) => rest.to_string(),
                    None => m,
                }
            })
        };
        assert_eq!(pack_len(3999, "4000"), Ok("11618".into()));
        assert_eq!(
            pack_len(4000, "4001"),
            Err("bad argument #0 to 'pack' (Too many arguments for MessagePack pack.)".into())
        );
        assert_eq!(
            pack_len(3999, "{}"),
            Err(overflow("in function table_is_an_array"))
        );
        assert_eq!(pack_len(3998, "{}"), Ok("11613".into()));
        assert_eq!(
            pack_len(3998, "{a=1}"),
            Err(overflow("in function mp_encode_lua_table_as_map"))
        );
        assert_eq!(pack_len(3997, "{{}}"), Ok("11611".into()));
        assert_eq!(pack_len(3997, "{a={}}"), Ok("11613".into()));
    }
}
