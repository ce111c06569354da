//! Conversions between RESP and Lua values, as Redis documents them:
//! a command's reply becomes the value `redis.call` returns, and the value
//! a script returns becomes the reply to EVAL.

use mlua::{Table, Value};

use crate::resp::Reply;

/// Deeper than this, a returned table is cut off with an error (Redis runs
/// out of Lua stack at a similar depth; a table that holds itself would
/// otherwise recurse forever).
const MAX_DEPTH: usize = 1000;

/// Writes `v` as the reply to EVAL. `script_resp3` is the protocol the
/// script chose with `redis.setresp` (it decides how booleans map).
pub fn lua_to_reply(v: &Value, r: &mut Reply, script_resp3: bool) {
    to_reply(v, r, script_resp3, 0)
}

fn to_reply(v: &Value, r: &mut Reply, script_resp3: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return r.error("ERR reached lua stack limit");
    }
    match v {
        Value::String(s) => r.bulk(&s.as_bytes()),
        Value::Boolean(b) => {
            if script_resp3 {
                r.boolean(*b)
            } else if *b {
                r.int(1)
            } else {
                r.null()
            }
        }
        Value::Integer(n) => r.int(*n),
        // C's cast, as Redis converts: out of range and NaN give i64::MIN.
        Value::Number(n) => r.int(super::structlib::clib::c_f64_to_i64(*n)),
        Value::Table(t) => table_to_reply(t, r, script_resp3, depth),
        _ => r.null(),
    }
}

fn table_to_reply(t: &Table, r: &mut Reply, script_resp3: bool, depth: usize) {
    // Redis copies both as C strings: they end at a NUL.
    let c_string = |b: &[u8]| -> Vec<u8> { b.split(|&c| c == 0).next().unwrap_or(b).to_vec() };
    if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
        return r.error_bytes(&c_string(&e.as_bytes()));
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
        let s: Vec<u8> = c_string(&s.as_bytes())
            .iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
            .collect();
        r.out.push(b'+');
        r.out.extend_from_slice(&s);
        r.out.extend_from_slice(b"\r\n");
        return;
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return r.double(d),
        Ok(Value::Integer(d)) => return r.double(d as f64),
        _ => {}
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("big_number") {
        let s: Vec<u8> = s
            .as_bytes()
            .iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
            .collect();
        if r.is_resp3() {
            r.out.push(b'(');
            r.out.extend_from_slice(&s);
            r.out.extend_from_slice(b"\r\n");
        } else {
            r.bulk(&s);
        }
        return;
    }
    if let Ok(Value::Table(vt)) = t.raw_get::<Value>("verbatim_string") {
        if let (Ok(Value::String(f)), Ok(Value::String(s))) =
            (vt.raw_get::<Value>("format"), vt.raw_get::<Value>("string"))
        {
            let f = f.as_bytes();
            if r.is_resp3() && f.len() == 3 {
                let s = s.as_bytes();
                r.out.push(b'=');
                let mut b = itoa::Buffer::new();
                r.out.extend_from_slice(b.format(s.len() + 4).as_bytes());
                r.out.extend_from_slice(b"\r\n");
                r.out.extend_from_slice(&f);
                r.out.push(b':');
                r.out.extend_from_slice(&s);
                r.out.extend_from_slice(b"\r\n");
            } else {
                r.bulk(&s.as_bytes());
            }
            return;
        }
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        let pairs: Vec<(Value, Value)> = m.pairs::<Value, Value>().filter_map(Result::ok).collect();
        r.map(pairs.len());
        for (k, v) in &pairs {
            to_reply(k, r, script_resp3, depth + 1);
            to_reply(v, r, script_resp3, depth + 1);
        }
        return;
    }
    if let Ok(Value::Table(s)) = t.raw_get::<Value>("set") {
        let keys: Vec<Value> = s
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        r.set(keys.len());
        for k in &keys {
            to_reply(k, r, script_resp3, depth + 1);
        }
        return;
    }
    // An array: elements 1, 2, … up to the first nil.
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
    }
    r.array(items.len());
    for v in &items {
        to_reply(v, r, script_resp3, depth + 1);
    }
}
