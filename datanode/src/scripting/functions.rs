//! The function libraries FUNCTION LOAD creates: each library is its
//! `#!lua name=…` code plus the functions it registered. Function names
//! are unique across libraries and compared without case, as Redis does;
//! library names are compared exactly.
//!
//! The registry only stores libraries: running their code (to learn what
//! they register) is the engine's business, passed in as a closure.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};

/// One registered function.
pub struct FunctionInfo {
    pub name: String,
    pub desc: Option<Vec<u8>>,
    /// `scripting::flag` bits (never EVAL_COMPAT).
    pub flags: u32,
    /// Its last run was short: the next may run on the command thread.
    pub fast: AtomicBool,
}

/// One library.
pub struct Library {
    /// Unique for the process: interpreters cache what they loaded by it.
    pub id: u64,
    pub name: String,
    /// The whole payload, shebang included (what DUMP and LIST show).
    pub code: Vec<u8>,
    /// Where the Lua code starts: the shebang's newline, kept so line
    /// numbers count from the payload's first line.
    pub body_at: usize,
    pub functions: Vec<FunctionInfo>,
}

impl Library {
    pub fn body(&self) -> &[u8] {
        &self.code[self.body_at..]
    }
}

/// A function found by name.
#[derive(Clone)]
pub struct FunctionRef {
    pub lib: Arc<Library>,
    pub index: usize,
}

impl FunctionRef {
    pub fn info(&self) -> &FunctionInfo {
        &self.lib.functions[self.index]
    }
}

/// What a library's `#!` line says.
#[derive(Debug, PartialEq, Eq)]
pub struct Metadata {
    pub engine: Vec<u8>,
    pub name: Vec<u8>,
    pub body_at: usize,
}

/// Runs a library's code (id, body) and reports what it registered.
/// Errors are bytes: they may quote the library's code.
pub type Loader<'a> = dyn FnMut(u64, &[u8]) -> Result<Vec<Registered>, Vec<u8>> + 'a;

/// What the engine reports after running a library's code.
pub struct Registered {
    pub name: String,
    pub desc: Option<Vec<u8>>,
    pub flags: u32,
}

#[derive(Default)]
pub struct Set {
    libs: BTreeMap<String, Arc<Library>>,
    /// Lowercased function name → its library's name.
    by_function: HashMap<String, String>,
    n_functions: usize,
}

impl Set {
    pub fn libraries(&self) -> impl Iterator<Item = &Arc<Library>> {
        self.libs.values()
    }

    pub fn library_count(&self) -> usize {
        self.libs.len()
    }

    pub fn function_count(&self) -> usize {
        self.n_functions
    }

    /// Every library's code, in the order FUNCTION LIST shows them.
    pub fn codes(&self) -> Vec<Vec<u8>> {
        self.libs.values().map(|l| l.code.clone()).collect()
    }

    pub fn find(&self, name: &[u8]) -> Option<FunctionRef> {
        let key = String::from_utf8_lossy(name).to_ascii_lowercase();
        let lib = self.libs.get(self.by_function.get(&key)?)?;
        let index = lib
            .functions
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(&key))?;
        Some(FunctionRef {
            lib: lib.clone(),
            index,
        })
    }

    fn link(&mut self, lib: Arc<Library>) {
        for f in &lib.functions {
            self.by_function
                .insert(f.name.to_ascii_lowercase(), lib.name.clone());
        }
        self.n_functions += lib.functions.len();
        self.libs.insert(lib.name.clone(), lib);
    }

    fn unlink(&mut self, name: &str) -> Option<Arc<Library>> {
        let lib = self.libs.remove(name)?;
        for f in &lib.functions {
            self.by_function.remove(&f.name.to_ascii_lowercase());
        }
        self.n_functions -= lib.functions.len();
        Some(lib)
    }

    /// The first function of `lib` whose name another library has.
    fn collision<'l>(&self, lib: &'l Library) -> Option<&'l str> {
        lib.functions
            .iter()
            .find(|f| self.by_function.contains_key(&f.name.to_ascii_lowercase()))
            .map(|f| f.name.as_str())
    }

    /// Adds a library built from `code`; `replace` swaps out one of the
    /// same name. Nothing changes on error. Errors are Redis's texts, in
    /// bytes: they may quote the code.
    pub fn create(
        &mut self,
        code: &[u8],
        replace: bool,
        run: &mut Loader<'_>,
    ) -> Result<String, Vec<u8>> {
        let md = parse_metadata(code)?;
        if !valid_name(&md.name) {
            return Err(BAD_NAME.into());
        }
        // Engines are looked up as C strings, ignoring case.
        if !super::c_str(&md.engine).eq_ignore_ascii_case(b"lua") {
            return Err([&b"Engine '"[..], &md.engine, b"' not found"].concat());
        }
        // A valid name is ASCII.
        let name = String::from_utf8_lossy(&md.name).into_owned();
        if self.libs.contains_key(&name) && !replace {
            return Err(format!("Library '{name}' already exists").into_bytes());
        }
        let id = next_id();
        let registered = run(id, &code[md.body_at..])?;
        if registered.is_empty() {
            return Err(b"No functions registered".to_vec());
        }
        let lib = Arc::new(Library {
            id,
            name: name.clone(),
            code: code.to_vec(),
            body_at: md.body_at,
            functions: registered
                .into_iter()
                .map(|r| FunctionInfo {
                    name: r.name,
                    desc: r.desc,
                    flags: r.flags,
                    fast: AtomicBool::new(false),
                })
                .collect(),
        });
        let old = self.unlink(&name);
        if let Some(f) = self.collision(&lib) {
            let e = format!("Function {f} already exists").into_bytes();
            if let Some(old) = old {
                self.link(old);
            }
            return Err(e);
        }
        self.link(lib);
        Ok(name)
    }

    pub fn delete(&mut self, name: &[u8]) -> bool {
        let name = String::from_utf8_lossy(name);
        self.unlink(&name).is_some()
    }

    /// Moves every library of `other` in (FUNCTION RESTORE's APPEND and
    /// REPLACE). Nothing changes on error.
    pub fn join(&mut self, other: Set, replace: bool) -> Result<(), String> {
        let mut replaced = Vec::new();
        let mut result = Ok(());
        for name in other.libs.keys() {
            if self.libs.contains_key(name) {
                if !replace {
                    result = Err(format!("Library {name} already exists"));
                    break;
                }
                replaced.extend(self.unlink(name));
            }
        }
        if result.is_ok() {
            if let Some(f) = other.libs.values().find_map(|l| self.collision(l)) {
                result = Err(format!("Function {f} already exists"));
            }
        }
        if result.is_err() {
            for lib in replaced {
                self.link(lib);
            }
            return result;
        }
        for lib in other.libs.into_values() {
            self.link(lib);
        }
        Ok(())
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// Library and function names: `[A-Za-z0-9_]+`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Reads the `#!<engine> name=<name>` line, split as Redis splits
/// arguments (quotes allowed). Errors are Redis's texts.
pub fn parse_metadata(code: &[u8]) -> Result<Metadata, Vec<u8>> {
    if !code.starts_with(b"#!") {
        return Err(b"Missing library metadata".to_vec());
    }
    let Some(end) = super::first_line_end(code) else {
        return Err(b"Invalid library metadata".to_vec());
    };
    let (mut buf, mut ranges) = (Vec::new(), Vec::new());
    if !crate::resp::parse::split_args(&code[..end], &mut buf, &mut ranges) || ranges.is_empty() {
        return Err(b"Invalid library metadata".to_vec());
    }
    let engine = buf[ranges[0].clone()][2..].to_vec();
    let mut name = None;
    for r in &ranges[1..] {
        let p = &buf[r.clone()];
        if p.len() >= 5 && p[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    b"Invalid metadata value, name argument was given multiple times".to_vec(),
                );
            }
            name = Some(p[5..].to_vec());
            continue;
        }
        return Err([&b"Invalid metadata value given: "[..], super::c_str(p)].concat());
    }
    let Some(name) = name else {
        return Err(b"Library name was not given".to_vec());
    };
    Ok(Metadata {
        engine,
        name,
        body_at: end,
    })
}

/// The shared registry. A write lock is held while a change is made and
/// logged, so a snapshot taken under the read lock sits at one point of
/// the effect stream.
#[derive(Default)]
pub struct Functions {
    set: RwLock<Set>,
    /// Bumped by every write: interpreters then drop dead libraries.
    gen: AtomicU64,
}

impl Functions {
    pub fn read(&self) -> RwLockReadGuard<'_, Set> {
        self.set.read()
    }

    /// The set, to change (every caller is assumed to change it).
    pub fn write(&self) -> parking_lot::RwLockWriteGuard<'_, Set> {
        let g = self.set.write();
        self.gen.fetch_add(1, Ordering::SeqCst);
        g
    }

    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::SeqCst)
    }

    pub fn library_ids(&self) -> std::collections::HashSet<u64> {
        self.set.read().libs.values().map(|l| l.id).collect()
    }

    /// Replaces the whole set (loading a snapshot).
    pub fn replace_all(&self, set: Set) {
        *self.write() = set;
    }

    pub fn find(&self, name: &[u8]) -> Option<FunctionRef> {
        self.set.read().find(name)
    }

    /// Every library's code (RDB, DUMP and rewrite).
    pub fn codes(&self) -> Vec<Vec<u8>> {
        self.set.read().codes()
    }

    /// Bytes the libraries take (INFO's `used_memory_functions`).
    pub fn bytes(&self) -> usize {
        let s = self.set.read();
        s.libs
            .values()
            .map(|l| {
                l.code.len()
                    + l.name.len()
                    + 64
                    + l.functions
                        .iter()
                        .map(|f| f.name.len() + 48 + f.desc.as_ref().map_or(0, |d| d.len()))
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(names: &[&str]) -> Result<Vec<Registered>, Vec<u8>> {
        Ok(names
            .iter()
            .map(|n| Registered {
                name: n.to_string(),
                desc: None,
                flags: 0,
            })
            .collect())
    }

    #[test]
    fn metadata_parses_as_redis_does() {
        let md = parse_metadata(b"#!lua name=lib\nreturn 1").unwrap();
        assert_eq!(
            (&md.engine[..], &md.name[..], md.body_at),
            (&b"lua"[..], &b"lib"[..], 14)
        );
        assert_eq!(
            parse_metadata(b"#!lua name=\"foo\"\n").unwrap().name,
            b"foo"
        );
        assert_eq!(parse_metadata(b"#! name=x\n").unwrap().engine, b"");
        let err = |c: &[u8]| String::from_utf8_lossy(&parse_metadata(c).unwrap_err()).into_owned();
        // Expected values below come from redis-server 7.0.15: C's
        // strchr stops at a NUL, and %s prints up to one.
        assert_eq!(err(b"#!lua name=x\0\n"), "Invalid library metadata");
        assert_eq!(
            parse_metadata(b"#!lua name=a \xff=1\n").unwrap_err(),
            b"Invalid metadata value given: \xff=1"
        );
        assert_eq!(err(b"return 1"), "Missing library metadata");
        assert_eq!(err(b"#!lua name=x"), "Invalid library metadata");
        assert_eq!(err(b"#!lua\n"), "Library name was not given");
        assert_eq!(
            err(b"#!lua name=a foo=bar\n"),
            "Invalid metadata value given: foo=bar"
        );
        assert_eq!(
            err(b"#!lua name=a NAME=b\n"),
            "Invalid metadata value, name argument was given multiple times"
        );
    }

    #[test]
    fn failed_loads_and_collisions_change_nothing() {
        let mut s = Set::default();
        assert_eq!(
            s.create(b"#!lua name=a\n", false, &mut |_, _| reg(&["f1", "f2"])),
            Ok("a".into())
        );
        assert_eq!(
            s.create(b"#!lua name=a\n", false, &mut |_, _| reg(&["g"])),
            Err("Library 'a' already exists".into())
        );
        assert_eq!(
            s.create(b"#!lua name=b\n", false, &mut |_, _| reg(&["F1"])),
            Err("Function F1 already exists".into())
        );
        assert_eq!(
            s.create(b"#!lua name=a\n", true, &mut |_, _| Err("boom".into())),
            Err("boom".into())
        );
        assert_eq!(
            s.create(b"#!py name=c\n", false, &mut |_, _| reg(&["x"])),
            Err("Engine 'py' not found".into())
        );
        assert!(s.find(b"F2").is_some());
        assert_eq!((s.library_count(), s.function_count()), (1, 2));
        // REPLACE drops the old library's functions.
        assert!(s
            .create(b"#!lua name=a\n", true, &mut |_, _| reg(&["f3"]))
            .is_ok());
        assert!(s.find(b"f1").is_none());
        assert_eq!(s.function_count(), 1);

        let mut other = Set::default();
        other
            .create(b"#!lua name=b\n", false, &mut |_, _| reg(&["f3"]))
            .unwrap();
        assert_eq!(
            s.join(other, true),
            Err("Function f3 already exists".into())
        );
        assert_eq!((s.library_count(), s.function_count()), (1, 1));
        assert!(s.delete(b"a"));
        assert_eq!(s.function_count(), 0);
    }
}
