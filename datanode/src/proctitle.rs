//! The process title (`set-proc-title`, `proc-title-template`): what `ps`
//! and /proc/PID/cmdline show, set as Redis sets it. The title is written
//! over the memory the kernel laid the arguments and the environment out
//! in (as setproctitle does); the environment is copied out of it first,
//! so what reads the environment later (getenv) still finds it there.
//! `std::env::args` reads that memory too: it is read before, never after.

use std::sync::Mutex;

/// The argument and environment strings' memory, once the environment
/// has moved out of it, and the program name the title starts from.
struct Area {
    start: usize,
    len: usize,
    program: String,
}

static AREA: Mutex<Option<Area>> = Mutex::new(None);

/// Takes over the argument area (and the environment's, when it follows
/// it). Call once, early, before threads that read the environment run.
#[cfg(target_os = "linux")]
pub fn init() {
    let Some((arg_start, arg_end, env_start, env_end)) = areas() else {
        return;
    };
    let program = std::env::args().next().unwrap_or_default();
    // The environment's strings move to the heap: clearenv drops the
    // pointers to the old ones, setenv copies each value.
    let vars: Vec<(std::ffi::CString, std::ffi::CString)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            use std::os::unix::ffi::OsStringExt;
            let k = std::ffi::CString::new(k.into_vec()).ok()?;
            let v = std::ffi::CString::new(v.into_vec()).ok()?;
            Some((k, v))
        })
        .collect();
    // SAFETY: called from main before any thread that reads or writes the
    // environment starts; the CStrings outlive the calls, which copy them.
    unsafe {
        libc::clearenv();
        for (k, v) in &vars {
            libc::setenv(k.as_ptr(), v.as_ptr(), 1);
        }
    }
    let end = if env_start == arg_end && env_end > env_start {
        env_end
    } else {
        arg_end
    };
    if end > arg_start {
        *AREA.lock().unwrap_or_else(|e| e.into_inner()) = Some(Area {
            start: arg_start,
            len: end - arg_start,
            program,
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn init() {}

/// arg_start, arg_end, env_start, env_end of /proc/self/stat (fields 48
/// to 51, counted after the parenthesised command name, which may hold
/// spaces).
#[cfg(target_os = "linux")]
fn areas() -> Option<(usize, usize, usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3.
    let f: Vec<usize> = rest
        .split_whitespace()
        .skip(48 - 3)
        .take(4)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4).then(|| (f[0], f[1], f[2], f[3]))
}

/// Sets the title: `title` cut to the area, the rest of it zeroed.
fn write(area: &Area, title: &str) {
    let n = title.len().min(area.len - 1);
    // SAFETY: [start, start+len) holds the argument and environment
    // strings the kernel gave this process: mapped, writable, and no
    // longer read by anything but the kernel (for /proc/PID/cmdline).
    unsafe {
        std::ptr::copy_nonoverlapping(title.as_ptr(), area.start as *mut u8, n);
        std::ptr::write_bytes((area.start + n) as *mut u8, 0, area.len - n);
    }
}

/// What the template's variables stand for.
pub struct Vars<'a> {
    pub bind: Option<&'a str>,
    pub port: u16,
    pub unixsocket: &'a str,
    pub config_file: Option<&'a str>,
    pub cluster: bool,
}

/// Expands `template` as Redis's sdstemplate does (`{name}` variables,
/// `{{` for a brace), trimmed of spaces; None for an unknown variable or
/// a brace left open.
pub fn expand(template: &str, title: &str, v: &Vars) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if after.is_empty() {
            return None;
        }
        if let Some(r) = after.strip_prefix('{') {
            out.push('{');
            rest = r;
            continue;
        }
        let close = after.find('}')?;
        match &after[..close] {
            "title" => out.push_str(title),
            "listen-addr" if v.port != 0 => {
                out.push_str(&format!("{}:{}", v.bind.unwrap_or("*"), v.port))
            }
            "listen-addr" => out.push_str(&format!("unixsocket:{}", v.unixsocket)),
            "server-mode" if v.cluster => out.push_str("[cluster]"),
            "server-mode" => {}
            "config-file" => out.push_str(v.config_file.unwrap_or("-")),
            "port" => out.push_str(&v.port.to_string()),
            "tls-port" => out.push('0'),
            "unixsocket" => out.push_str(v.unixsocket),
            _ => return None,
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out.trim_matches(' ').to_string())
}

/// Sets the title from `template` (nothing when `init` did not run).
pub fn set(template: &str, v: &Vars) {
    let guard = AREA.lock().unwrap_or_else(|e| e.into_inner());
    let Some(area) = guard.as_ref() else {
        return;
    };
    if let Some(title) = expand(template, &area.program, v) {
        write(area, &title);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_as_redis() {
        let v = Vars {
            bind: Some("127.0.0.1"),
            port: 6379,
            unixsocket: "/tmp/s",
            config_file: None,
            cluster: true,
        };
        let t = "{title} {listen-addr} {server-mode}";
        assert_eq!(
            expand(t, "/bin/x", &v).as_deref(),
            Some("/bin/x 127.0.0.1:6379 [cluster]")
        );
        assert_eq!(
            expand(" {{port} {port} {tls-port} {config-file} ", "x", &v).as_deref(),
            Some("{port} 6379 0 -")
        );
        let none = Vars {
            bind: None,
            port: 0,
            cluster: false,
            ..v
        };
        assert_eq!(
            expand(t, "x", &none).as_deref(),
            Some("x unixsocket:/tmp/s")
        );
        assert_eq!(expand("{nope}", "x", &v), None);
        assert_eq!(expand("a {", "x", &v), None);
        assert_eq!(expand("a {title", "x", &v), None);
    }
}
