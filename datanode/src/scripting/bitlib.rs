//! The `bit` library Redis loads into scripts (the LuaBitOp API): 32-bit
//! operations on Lua numbers, results as signed 32-bit numbers.

use mlua::{Lua, MultiValue, Table, Value};

use super::engine::{called_name, lua_error};
use super::structlib::clib::type_name;

/// Argument `i` (0-based) as LuaBitOp's `barg` reads it: a number, or a
/// string Lua reads as one (hex included), to its 32 low bits, modular
/// (2^32 + 1 is 1 and -1 is 0xffffffff).
fn to_bit(lua: &Lua, args: &MultiValue, i: usize) -> mlua::Result<i32> {
    let v = args.get(i).cloned().unwrap_or(Value::Nil);
    let n = match &v {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(_) => lua.coerce_number(v.clone())?,
        _ => None,
    };
    let Some(n) = n else {
        // `luaL_typerror`: an absent argument is "no value", a nil "nil".
        let got = if i >= args.len() {
            "no value"
        } else {
            type_name(&v)
        };
        return Err(lua_error(
            lua,
            &format!(
                "bad argument #{} to '{}' (number expected, got {got})",
                i + 1,
                called_name(lua)
            ),
        ));
    };
    // LuaBitOp's trick itself: adding 2^52 + 2^51 rounds to an integer in
    // the double's low bits, which are the result; for numbers too big for
    // the trick those bits are whatever the double holds, as in C.
    Ok((n + 6_755_399_441_055_744.0).to_bits() as u32 as i32)
}

/// Builds the `bit` table.
pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "tobit",
        lua.create_function(|lua, a: MultiValue| Ok(to_bit(lua, &a, 0)? as f64))?,
    )?;
    t.raw_set(
        "bnot",
        lua.create_function(|lua, a: MultiValue| Ok(!to_bit(lua, &a, 0)? as f64))?,
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
            lua.create_function(move |lua, a: MultiValue| {
                let mut acc = to_bit(lua, &a, 0)?;
                for i in 1..a.len() {
                    acc = f(acc, to_bit(lua, &a, i)?);
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
            lua.create_function(move |lua, a: MultiValue| {
                let x = to_bit(lua, &a, 0)?;
                let n = (to_bit(lua, &a, 1)? & 31) as u32;
                Ok(f(x, n) as f64)
            })?,
        )?;
    }
    t.raw_set(
        "bswap",
        lua.create_function(|lua, a: MultiValue| Ok(to_bit(lua, &a, 0)?.swap_bytes() as f64))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|lua, a: MultiValue| {
            let x = to_bit(lua, &a, 0)? as u32;
            // Absent is 8 digits; an explicit nil is a bad argument.
            let mut n = if a.len() < 2 { 8 } else { to_bit(lua, &a, 1)? };
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
