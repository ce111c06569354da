// slotkv: the Lua sources here carry our changes; when they change, this
// crate and mlua-sys's build (which compiles them) must run again. Cargo
// would otherwise only watch src/lib.rs.
fn main() {
    println!("cargo:rerun-if-changed=lua-5.1.5");
}
