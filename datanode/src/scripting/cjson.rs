//! The `cjson` library Redis loads into scripts (lua-cjson 2.1.0 as Redis
//! 7.0 bundles it): `encode`, `decode`, `null` and the configuration
//! functions, with that version's output and error texts (numbers as
//! `%.14g`, `/` escaped, an empty table encoded as `{}`, sparse arrays
//! refused, nesting limited to 1000).

use std::sync::Arc;

use mlua::{LightUserData, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;

/// Settings changed by the configuration functions; they last for the
/// interpreter's life, as in Redis.
struct Config {
    sparse_convert: bool,
    sparse_ratio: i64,
    sparse_safe: i64,
    encode_max_depth: i64,
    decode_max_depth: i64,
    precision: usize,
    keep_buffer: bool,
    /// 0: refuse NaN and Inf; 1: write them; 2: write null.
    encode_invalid: u8,
    decode_invalid: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            precision: 14,
            keep_buffer: true,
            encode_invalid: 0,
            decode_invalid: true,
        }
    }
}

type Shared = Arc<Mutex<Config>>;

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

fn one_arg(args: &MultiValue, func: &str) -> mlua::Result<()> {
    if args.len() != 1 {
        return Err(err(format!(
            "bad argument #1 to '{func}' (expected 1 argument)"
        )));
    }
    Ok(())
}

/// Builds the `cjson` table.
pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let cfg: Shared = Arc::default();
    let t = lua.create_table()?;
    let c = cfg.clone();
    t.raw_set(
        "encode",
        lua.create_function(move |lua, args: MultiValue| {
            one_arg(&args, "encode")?;
            let cfg = c.lock();
            let mut out = Vec::new();
            encode_value(&cfg, &args[0], 0, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode",
        lua.create_function(move |lua, args: MultiValue| {
            one_arg(&args, "decode")?;
            let text = match &args[0] {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Integer(n) => crate::util::format_g(*n as f64, 14).into_bytes(),
                Value::Number(n) => crate::util::format_g(*n, 14).into_bytes(),
                v => {
                    return Err(err(format!(
                        "bad argument #1 to 'decode' (string expected, got {})",
                        type_name(v)
                    )))
                }
            };
            if text.len() >= 2 && (text[0] == 0 || text[1] == 0) {
                return Err(err("JSON parser does not support UTF-16 or UTF-32"));
            }
            let cfg = c.lock();
            let mut p = Parser {
                lua,
                cfg: &cfg,
                s: &text,
                pos: 0,
                depth: 0,
            };
            let tok = p.next_token();
            let v = p.value(tok)?;
            let end = p.next_token();
            if !matches!(end.kind, Tok::End) {
                return Err(p.expected("the end", &end));
            }
            Ok(v)
        })?,
    )?;
    config_functions(lua, &t, &cfg)?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse().ok()),
        _ => None,
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Nil | Value::Boolean(false))
}

/// The configuration functions: each sets what it is given and returns
/// the current setting(s).
fn config_functions(lua: &Lua, t: &Table, cfg: &Shared) -> mlua::Result<()> {
    let c = cfg.clone();
    t.raw_set(
        "encode_sparse_array",
        lua.create_function(move |_, a: MultiValue| {
            let mut g = c.lock();
            if let Some(v) = a.front().filter(|v| !v.is_nil()) {
                g.sparse_convert = truthy(v);
            }
            if let Some(n) = a.get(1).and_then(number_of) {
                g.sparse_ratio = n as i64;
            }
            if let Some(n) = a.get(2).and_then(number_of) {
                g.sparse_safe = n as i64;
            }
            Ok((g.sparse_convert, g.sparse_ratio, g.sparse_safe))
        })?,
    )?;
    for (name, decode) in [("encode_max_depth", false), ("decode_max_depth", true)] {
        let c = cfg.clone();
        t.raw_set(
            name,
            lua.create_function(move |_, a: MultiValue| {
                let mut g = c.lock();
                if let Some(n) = a.front().and_then(number_of) {
                    if n < 1.0 {
                        return Err(err(format!(
                            "bad argument #1 to '{name}' (expected integer between 1 and 2147483647)"
                        )));
                    }
                    if decode {
                        g.decode_max_depth = n as i64;
                    } else {
                        g.encode_max_depth = n as i64;
                    }
                }
                Ok(if decode {
                    g.decode_max_depth
                } else {
                    g.encode_max_depth
                })
            })?,
        )?;
    }
    let c = cfg.clone();
    t.raw_set(
        "encode_number_precision",
        lua.create_function(move |_, a: MultiValue| {
            let mut g = c.lock();
            if let Some(n) = a.front().and_then(number_of) {
                if !(1.0..=14.0).contains(&n) {
                    return Err(err(
                        "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)",
                    ));
                }
                g.precision = n as usize;
            }
            Ok(g.precision as i64)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "encode_keep_buffer",
        lua.create_function(move |_, a: MultiValue| {
            let mut g = c.lock();
            if let Some(v) = a.front().filter(|v| !v.is_nil()) {
                g.keep_buffer = truthy(v);
            }
            Ok(g.keep_buffer)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "encode_invalid_numbers",
        lua.create_function(move |lua, a: MultiValue| {
            let mut g = c.lock();
            match a.front() {
                Some(Value::String(s)) if s.as_bytes() == b"null" => g.encode_invalid = 2,
                Some(v) if !v.is_nil() => g.encode_invalid = truthy(v) as u8,
                _ => {}
            }
            Ok(match g.encode_invalid {
                2 => Value::String(lua.create_string("null")?),
                n => Value::Boolean(n == 1),
            })
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode_invalid_numbers",
        lua.create_function(move |_, a: MultiValue| {
            let mut g = c.lock();
            if let Some(v) = a.front().filter(|v| !v.is_nil()) {
                g.decode_invalid = truthy(v);
            }
            Ok(g.decode_invalid)
        })?,
    )?;
    t.raw_set("new", lua.create_function(|lua, ()| open(lua))?)?;
    Ok(())
}

// ---- Encoding ----

fn serialise_error(v: &Value, reason: &str) -> mlua::Error {
    err(format!("Cannot serialise {}: {reason}", type_name(v)))
}

fn encode_value(cfg: &Config, v: &Value, depth: i64, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Integer(_) | Value::Number(_) => encode_number(cfg, v, out)?,
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > cfg.encode_max_depth {
                return Err(err(format!(
                    "Cannot serialise, excessive nesting ({depth})"
                )));
            }
            match array_length(cfg, v, t)? {
                Some(n) if n > 0 => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i)?;
                        encode_value(cfg, &item, depth, out)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.clone().pairs::<Value, Value>() {
                        let (k, item) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::Integer(_) | Value::Number(_) => {
                                out.push(b'"');
                                encode_number(cfg, &k, out)?;
                                out.extend_from_slice(b"\":");
                            }
                            Value::String(s) => {
                                encode_string(&s.as_bytes(), out);
                                out.push(b':');
                            }
                            _ => {
                                return Err(serialise_error(
                                    &k,
                                    "table key must be a number or string",
                                ))
                            }
                        }
                        encode_value(cfg, &item, depth, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => return Err(serialise_error(other, "type not supported")),
    }
    Ok(())
}

/// The table's array length when every key is an integer >= 1 (None
/// otherwise), refusing excessively sparse arrays as lua-cjson does.
///
/// As in C, the largest key is kept in an `int`: a key past its range
/// stores INT_MIN (x86-64's conversion), which a later smaller key then
/// replaces, and a length of 0 or less encodes the table as an object.
fn array_length(cfg: &Config, v: &Value, t: &Table) -> mlua::Result<Option<usize>> {
    let (mut max, mut items) = (0i32, 0i64);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let k = match k {
            Value::Integer(n) => n as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if k.floor() != k || k < 1.0 {
            return Ok(None);
        }
        if k > f64::from(max) {
            max = c_f64_to_i32(k);
        }
        items += 1;
    }
    let max = i64::from(max);
    if cfg.sparse_ratio > 0 && max > items * cfg.sparse_ratio && max > cfg.sparse_safe {
        if !cfg.sparse_convert {
            return Err(serialise_error(v, "excessively sparse array"));
        }
        return Ok(None);
    }
    Ok(usize::try_from(max).ok())
}

/// A C cast of a double to `int` on x86-64: truncation, and INT_MIN for
/// NaN and numbers out of range.
fn c_f64_to_i32(n: f64) -> i32 {
    if n.is_nan() || !(-2_147_483_649.0..2_147_483_648.0).contains(&n) {
        i32::MIN
    } else {
        n as i32
    }
}

fn encode_number(cfg: &Config, v: &Value, out: &mut Vec<u8>) -> mlua::Result<()> {
    let n = match v {
        Value::Integer(n) => *n as f64,
        Value::Number(n) => *n,
        _ => 0.0,
    };
    if !n.is_finite() {
        match cfg.encode_invalid {
            0 => return Err(serialise_error(v, "must not be NaN or Inf")),
            1 if n.is_nan() => {
                out.extend_from_slice(b"nan");
                return Ok(());
            }
            1 => {
                out.extend_from_slice(if n > 0.0 { b"inf" } else { b"-inf" });
                return Ok(());
            }
            _ => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
        }
    }
    out.extend_from_slice(crate::util::format_g(n, cfg.precision).as_bytes());
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            9 => out.extend_from_slice(b"\\t"),
            10 => out.extend_from_slice(b"\\n"),
            12 => out.extend_from_slice(b"\\f"),
            13 => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

// ---- Decoding ----

enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

struct Token {
    kind: Tok,
    /// Where it starts (0-based; errors show it 1-based).
    at: usize,
}

impl Tok {
    /// lua-cjson's token names, as its errors show them.
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str(_) => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e) => e,
        }
    }
}

struct Parser<'a> {
    lua: &'a Lua,
    cfg: &'a Config,
    s: &'a [u8],
    pos: usize,
    depth: i64,
}

impl Parser<'_> {
    /// The byte at `i`; the text ends at its first NUL, as C sees it.
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    fn expected(&self, what: &str, t: &Token) -> mlua::Error {
        err(format!(
            "Expected {what} but found {} at character {}",
            t.kind.name(),
            t.at + 1
        ))
    }

    fn error_token(&self, what: &'static str) -> Token {
        Token {
            kind: Tok::Error(what),
            at: self.pos,
        }
    }

    fn next_token(&mut self) -> Token {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let at = self.pos;
        let c = self.at(at);
        let single = match c {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            0 => return Token { kind: Tok::End, at },
            _ => None,
        };
        if let Some(kind) = single {
            self.pos += 1;
            return Token { kind, at };
        }
        let rest = &self.s[at..];
        match c {
            b'"' => self.string_token(),
            b'-' | b'0'..=b'9' => {
                if !self.cfg.decode_invalid && self.invalid_number() {
                    return self.error_token("invalid number");
                }
                self.number_token()
            }
            b't' if rest.starts_with(b"true") => {
                self.pos += 4;
                Token {
                    kind: Tok::Bool(true),
                    at,
                }
            }
            b'f' if rest.starts_with(b"false") => {
                self.pos += 5;
                Token {
                    kind: Tok::Bool(false),
                    at,
                }
            }
            b'n' if rest.starts_with(b"null") => {
                self.pos += 4;
                Token {
                    kind: Tok::Null,
                    at,
                }
            }
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+' => {
                if self.cfg.decode_invalid && self.invalid_number() {
                    return self.number_token();
                }
                self.error_token("invalid token")
            }
            _ => self.error_token("invalid token"),
        }
    }

    /// What strict JSON refuses but strtod would take.
    fn invalid_number(&self) -> bool {
        let mut p = self.pos;
        match self.at(p) {
            b'+' => return true,
            b'-' => p += 1,
            _ => {}
        }
        let c = self.at(p);
        if c == b'0' {
            let c2 = self.at(p + 1);
            return (c2 | 0x20) == b'x' || c2.is_ascii_digit();
        }
        if c <= b'9' {
            return false;
        }
        let word = &self.s[p.min(self.s.len())..];
        let w3 = word.get(..3).map(|w| w.to_ascii_lowercase());
        matches!(w3.as_deref(), Some(b"inf") | Some(b"nan"))
    }

    fn number_token(&mut self) -> Token {
        let at = self.pos;
        match strtod(&self.s[at..]) {
            Some((n, len)) => {
                self.pos += len;
                Token {
                    kind: Tok::Num(n),
                    at,
                }
            }
            None => self.error_token("invalid number"),
        }
    }

    fn string_token(&mut self) -> Token {
        let at = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => break,
                0 => return self.error_token("unexpected end of string"),
                b'\\' => {
                    let e = self.at(self.pos + 1);
                    let ch = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b't' => 9,
                        b'n' => 10,
                        b'f' => 12,
                        b'r' => 13,
                        b'u' => {
                            if !self.unicode_escape(&mut out) {
                                return self.error_token("invalid unicode escape code");
                            }
                            continue;
                        }
                        _ => return self.error_token("invalid escape code"),
                    };
                    out.push(ch);
                    self.pos += 2;
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Token {
            kind: Tok::Str(out),
            at,
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0;
        for i in 0..4 {
            let d = (self.at(at + i) as char).to_digit(16)?;
            v = (v << 4) | d;
        }
        Some(v)
    }

    /// `\uXXXX` (or a surrogate pair of them) as UTF-8.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(mut cp) = self.hex4(self.pos + 2) else {
            return false;
        };
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 {
                return false;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return false;
            }
            let Some(low) = self.hex4(self.pos + 8) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        match char::from_u32(cp) {
            Some(ch) => {
                let mut b = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
            }
            // Lone low surrogates still encode, as the C code does.
            None => {
                out.push(((cp >> 12) | 0xE0) as u8);
                out.push((((cp >> 6) & 0x3F) | 0x80) as u8);
                out.push(((cp & 0x3F) | 0x80) as u8);
            }
        }
        self.pos += len;
        true
    }

    fn descend(&mut self) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth > self.cfg.decode_max_depth {
            return Err(err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            )));
        }
        Ok(())
    }

    fn value(&mut self, t: Token) -> mlua::Result<Value> {
        Ok(match t.kind {
            Tok::Str(s) => Value::String(self.lua.create_string(&s)?),
            Tok::Num(n) => Value::Number(n),
            Tok::Bool(b) => Value::Boolean(b),
            Tok::Null => null(),
            Tok::ObjBegin => Value::Table(self.object()?),
            Tok::ArrBegin => Value::Table(self.array()?),
            _ => return Err(self.expected("value", &t)),
        })
    }

    fn object(&mut self) -> mlua::Result<Table> {
        self.descend()?;
        let t = self.lua.create_table()?;
        let mut tok = self.next_token();
        if matches!(tok.kind, Tok::ObjEnd) {
            self.depth -= 1;
            return Ok(t);
        }
        loop {
            let Tok::Str(key) = &tok.kind else {
                return Err(self.expected("object key string", &tok));
            };
            let key = self.lua.create_string(key)?;
            let colon = self.next_token();
            if !matches!(colon.kind, Tok::Colon) {
                return Err(self.expected("colon", &colon));
            }
            let vt = self.next_token();
            let v = self.value(vt)?;
            t.raw_set(key, v)?;
            let sep = self.next_token();
            match sep.kind {
                Tok::ObjEnd => {
                    self.depth -= 1;
                    return Ok(t);
                }
                Tok::Comma => tok = self.next_token(),
                _ => return Err(self.expected("comma or object end", &sep)),
            }
        }
    }

    fn array(&mut self) -> mlua::Result<Table> {
        self.descend()?;
        let t = self.lua.create_table()?;
        let mut tok = self.next_token();
        if matches!(tok.kind, Tok::ArrEnd) {
            self.depth -= 1;
            return Ok(t);
        }
        let mut i = 1;
        loop {
            let v = self.value(tok)?;
            t.raw_set(i, v)?;
            i += 1;
            let sep = self.next_token();
            match sep.kind {
                Tok::ArrEnd => {
                    self.depth -= 1;
                    return Ok(t);
                }
                Tok::Comma => tok = self.next_token(),
                _ => return Err(self.expected("comma or array end", &sep)),
            }
        }
    }
}

/// C's strtod on the text's start (lua-cjson reads numbers with it): the
/// value and how many bytes it took, or None when no number starts here.
fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let p = crate::strtod::strtod(s);
    (p.used > 0).then_some((p.value, p.used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str) -> String {
        let lua = Lua::new();
        lua.globals().set("cjson", open(&lua).unwrap()).unwrap();
        match lua.load(code).eval::<Value>() {
            Ok(Value::String(s)) => s.to_string_lossy(),
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn encodes_as_lua_cjson_does() {
        assert_eq!(run("return cjson.encode({1, 2, 'a/b'})"), r#"[1,2,"a\/b"]"#);
        assert_eq!(run("return cjson.encode({})"), "{}");
        assert_eq!(run("return cjson.encode(0.1)"), "0.1");
        assert_eq!(run("return cjson.encode(1/3)"), "0.33333333333333");
        assert_eq!(run("return cjson.encode({[1]=1, [3]=3})"), "[1,null,3]");
        assert_eq!(
            run("return cjson.encode('\\1\\127\"')"),
            r#""\u0001\u007f\"""#
        );
        assert!(run("return cjson.encode({[20]=1})").contains("excessively sparse array"));
        assert!(run("return cjson.encode(1/0)")
            .contains("Cannot serialise number: must not be NaN or Inf"));
        assert!(run("return cjson.encode(print)")
            .contains("Cannot serialise function: type not supported"));
        assert!(run("local t = {} t[1] = t return cjson.encode(t)")
            .contains("Cannot serialise, excessive nesting (1001)"));
    }

    #[test]
    fn decodes_as_lua_cjson_does() {
        assert_eq!(
            run("return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')"),
            "0 -5000 -1 0.0003 1023.2 0"
        );
        assert_eq!(
            run(r#"return cjson.decode('"\\u00e9\\ud83d\\ude00"')"#),
            "é😀"
        );
        assert_eq!(
            run("return tostring(cjson.decode('null') == cjson.null)"),
            "true"
        );
        assert!(run("return cjson.decode('[1,')")
            .contains("Expected value but found T_END at character 4"));
        assert!(run("return cjson.decode('{1:2}')")
            .contains("Expected object key string but found T_NUMBER at character 2"));
        assert!(run("return cjson.decode('x')")
            .contains("Expected value but found invalid token at character 1"));
        assert!(run("return cjson.decode('[1] 2')")
            .contains("Expected the end but found T_NUMBER at character 5"));
        assert!(run("return cjson.decode(string.rep('[', 1001))")
            .contains("Found too many nested data structures (1001) at character 1001"));
    }

    #[test]
    fn strtod_reads_what_c_reads() {
        assert_eq!(strtod(b"12abc"), Some((12.0, 2)));
        assert_eq!(strtod(b"-1.5e3,"), Some((-1500.0, 6)));
        assert_eq!(strtod(b"1e"), Some((1.0, 1)));
        assert_eq!(strtod(b"0x1F"), Some((31.0, 4)));
        assert_eq!(strtod(b"-"), None);
        assert_eq!(strtod(b".5"), Some((0.5, 2)));
    }
}
