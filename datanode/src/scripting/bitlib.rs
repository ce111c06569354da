//! The `bit` library Redis loads into scripts (the LuaBitOp API): 32-bit
//! operations on Lua numbers, results as signed 32-bit numbers.

use mlua::{Lua, MultiValue, Table, Value};

/// A Lua number to its 32 low bits, as LuaBitOp normalises (modular, so
/// 2^32 + 1 is 1 and -1 is 0xffffffff).
fn to_bit(v: &Value, pos: usize, func: &str) -> mlua::Result<i32> {
    let n = match v {
        Value::Integer(n) => *n as f64,
        Value::Number(n) => *n,
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| bad_arg(pos, func, v))?,
        _ => return Err(bad_arg(pos, func, v)),
    };
    // Round to nearest like LuaBitOp's 2^52 + 2^51 trick, then wrap.
    let r = n.round_ties_even();
    Ok((r.rem_euclid(4_294_967_296.0) as u64) as u32 as i32)
}

fn bad_arg(pos: usize, func: &str, v: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "bad argument #{pos} to '{func}' (number expected, got {})",
        if matches!(v, Value::Nil) {
            "no value"
        } else {
            v.type_name()
        }
    ))
}

fn arg(args: &MultiValue, i: usize) -> Value {
    args.get(i).cloned().unwrap_or(Value::Nil)
}

/// Builds the `bit` table.
pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "tobit",
        lua.create_function(|_, a: MultiValue| Ok(to_bit(&arg(&a, 0), 1, "tobit")? as f64))?,
    )?;
    t.raw_set(
        "bnot",
        lua.create_function(|_, a: MultiValue| Ok(!to_bit(&arg(&a, 0), 1, "bnot")? as f64))?,
    )?;
    type Fold = fn(i32, i32) -> i32;
    let folds: [(&str, Fold); 3] = [
        ("band", |x, y| x & y),
        ("bor", |x, y| x | y),
        ("bxor", |x, y| x ^ y),
    ];
    for (name, f) in folds {
        t.raw_set(
            name,
            lua.create_function(move |_, a: MultiValue| {
                let mut acc = to_bit(&arg(&a, 0), 1, name)?;
                for i in 1..a.len() {
                    acc = f(acc, to_bit(&a[i], i + 1, name)?);
                }
                Ok(acc as f64)
            })?,
        )?;
    }
    type Shift = fn(i32, u32) -> i32;
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |x, n| ((x as u32) << n) as i32),
        ("rshift", |x, n| ((x as u32) >> n) as i32),
        ("arshift", |x, n| x >> n),
        ("rol", |x, n| (x as u32).rotate_left(n) as i32),
        ("ror", |x, n| (x as u32).rotate_right(n) as i32),
    ];
    for (name, f) in shifts {
        t.raw_set(
            name,
            lua.create_function(move |_, a: MultiValue| {
                let x = to_bit(&arg(&a, 0), 1, name)?;
                let n = (to_bit(&arg(&a, 1), 2, name)? & 31) as u32;
                Ok(f(x, n) as f64)
            })?,
        )?;
    }
    t.raw_set(
        "bswap",
        lua.create_function(|_, a: MultiValue| {
            Ok(to_bit(&arg(&a, 0), 1, "bswap")?.swap_bytes() as f64)
        })?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|_, a: MultiValue| {
            let x = to_bit(&arg(&a, 0), 1, "tohex")? as u32;
            let mut n = match a.get(1) {
                None | Some(Value::Nil) => 8,
                Some(v) => to_bit(v, 2, "tohex")?,
            };
            let upper = n < 0;
            if upper {
                n = -n;
            }
            let n = n.min(8) as usize;
            let s = if upper {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(s[8 - n..].to_string())
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bit_operations_follow_luabitop() {
        let lua = mlua::Lua::new();
        let bit = super::open(&lua).expect("bit");
        lua.globals().set("bit", bit).expect("set");
        let check = |expr: &str, want: &str| {
            let got: String = lua
                .load(format!("return tostring({expr})"))
                .eval()
                .expect(expr);
            assert_eq!(got, want, "{expr}");
        };
        check("bit.tobit(0xffffffff)", "-1");
        check("bit.tobit(0xffffffff + 1)", "0");
        check("bit.tobit(2^40 + 1234)", "1234");
        check("bit.band(0x12345678, 0xff)", "120");
        check("bit.bor(1, 2, 4)", "7");
        check("bit.bxor(5, 3)", "6");
        check("bit.bnot(0)", "-1");
        check("bit.lshift(1, 31)", "-2147483648");
        check("bit.rshift(-1, 28)", "15");
        check("bit.arshift(-256, 4)", "-16");
        check("bit.rol(0x12345678, 12)", "1164411171");
        check("bit.ror(0x12345678, 12)", "1736516421");
        check("bit.bswap(0x12345678)", "2018915346");
        check("bit.tohex(1)", "00000001");
        check("bit.tohex(-1, -4)", "FFFF");
        check("bit.tohex(0x12345678, 2)", "78");
    }
}
