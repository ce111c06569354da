//! Readonly tables, as Redis 7.0 protects what its scripts can reach.
//!
//! The flag lives in the table itself (our patched Lua, see
//! vendor/lua-src/README.md): assignment, `rawset`, `table.insert` and
//! `setmetatable` all refuse a readonly table, while reads, `pairs`, `next`
//! and `rawget` see its real contents. A read-only proxy in Lua could not
//! do both: `rawset` and `table.insert` wrote into the proxy itself, and
//! `pairs` saw it empty.

use std::os::raw::c_int;

use mlua::ffi::{self, lua_State};

extern "C-unwind" {
    fn lua_enablereadonlytable(l: *mut lua_State, idx: c_int, enabled: c_int);
    fn lua_isreadonlytable(l: *mut lua_State, idx: c_int) -> c_int;
}

/// `protect(t)`: marks `t` readonly, and every table reachable from it
/// through its values and metatables (a table already readonly is not
/// walked again, which also ends cycles).
pub(super) unsafe extern "C-unwind" fn protect(l: *mut lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TTABLE);
    ffi::lua_settop(l, 1);
    protect_top(l);
    0
}

/// Marks the table on top of the stack and what it reaches; leaves the
/// stack as it found it. Each level uses three slots: the table's key,
/// its value, and a metatable.
unsafe fn protect_top(l: *mut lua_State) {
    if lua_isreadonlytable(l, -1) != 0 {
        return;
    }
    lua_enablereadonlytable(l, -1, 1);
    ffi::luaL_checkstack(l, 3, c"tables nested too deep to protect".as_ptr());
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, -2) != 0 {
        if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
            protect_top(l);
        }
        ffi::lua_settop(l, -2);
    }
    if ffi::lua_getmetatable(l, -1) != 0 {
        protect_top(l);
        ffi::lua_settop(l, -2);
    }
}

/// `set_readonly(t, on)`: sets or clears the flag of `t` alone (our own
/// code switches the globals' metatable between a library's load and its
/// calls).
pub(super) unsafe extern "C-unwind" fn set_readonly(l: *mut lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TTABLE);
    lua_enablereadonlytable(l, 1, ffi::lua_toboolean(l, 2));
    0
}

/// `is_readonly(t)`: whether `t` is a readonly table.
pub(super) unsafe extern "C-unwind" fn is_readonly(l: *mut lua_State) -> c_int {
    let ro = ffi::lua_type(l, 1) == ffi::LUA_TTABLE && lua_isreadonlytable(l, 1) != 0;
    ffi::lua_pushboolean(l, ro as c_int);
    1
}

/// `set_fields(t, k1, v1, k2, v2, ...)`: raw sets on `t` past its readonly
/// flag, which is on again afterwards (an EVAL's KEYS and ARGV in the
/// globals). The keys are our own strings, so no set raises an error
/// mid-way but an allocation failure.
pub(super) unsafe extern "C-unwind" fn set_fields(l: *mut lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TTABLE);
    let n = ffi::lua_gettop(l);
    lua_enablereadonlytable(l, 1, 0);
    let mut i = 2;
    while i < n {
        ffi::lua_pushvalue(l, i);
        ffi::lua_pushvalue(l, i + 1);
        ffi::lua_rawset(l, 1);
        i += 2;
    }
    lua_enablereadonlytable(l, 1, 1);
    0
}
