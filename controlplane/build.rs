// The dashboard's built files are embedded (src/web.rs): a new build of
// them must rebuild this crate.
fn main() {
    println!("cargo:rerun-if-changed=../web/dist");
}
