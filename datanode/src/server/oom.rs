//! `oom-score-adj`: tells Linux's out-of-memory killer how to rank this
//! process, as Redis does. With it on, `/proc/self/oom_score_adj` gets the
//! value `oom-score-adj-values` gives the node's role (master, replica; the
//! third, for a background child, has no use here: datanode saves on a
//! thread), added to the score the process had before (`relative`, also
//! spelt `yes`) or as it is (`absolute`). Turning it off puts that earlier
//! score back.

use parking_lot::Mutex;

use super::shared::Shared;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    Relative,
    Absolute,
}

impl Mode {
    pub fn from_setting(v: &str) -> Mode {
        match v {
            "yes" | "relative" => Mode::Relative,
            "absolute" => Mode::Absolute,
            _ => Mode::Off,
        }
    }
}

/// The score for a role (0 master, 1 replica), given the values and the
/// score the process had before we changed it; the kernel's range caps it.
pub fn target(mode: Mode, values: [i32; 3], role: usize, base: i32) -> i32 {
    let v = values[role] + if mode == Mode::Relative { base } else { 0 };
    v.clamp(-1000, 1000)
}

/// `oom-score-adj-values`, already validated: three integers.
pub fn parse_values(v: &str) -> [i32; 3] {
    let mut out = [0, 200, 800];
    for (o, w) in out.iter_mut().zip(v.split_whitespace()) {
        *o = w.parse().unwrap_or(*o);
    }
    out
}

/// The score the process had before we first changed it; None while we
/// have not changed it.
static BASE: Mutex<Option<i32>> = Mutex::new(None);

const PATH: &str = "/proc/self/oom_score_adj";

/// Applies the configuration for the node's current role. Errors say why
/// the score could not be read or written (raising it needs no privilege,
/// lowering it below where it was does).
pub fn apply(srv: &Shared) -> Result<(), String> {
    let (mode, values) = {
        let c = srv.config.read();
        (
            Mode::from_setting(c.value("oom-score-adj")),
            parse_values(c.value("oom-score-adj-values")),
        )
    };
    let role = usize::from(srv.repl.is_replica());
    let mut base = BASE.lock();
    let score = match (mode, *base) {
        (Mode::Off, None) => return Ok(()),
        (Mode::Off, Some(b)) => {
            *base = None;
            b
        }
        (m, Some(b)) => target(m, values, role, b),
        (m, None) => {
            let b = read()?;
            *base = Some(b);
            target(m, values, role, b)
        }
    };
    std::fs::write(PATH, format!("{score}\n")).map_err(|e| {
        tracing::warn!("Unable to write oom_score_adj: {e}");
        e.to_string()
    })
}

fn read() -> Result<i32, String> {
    let s = std::fs::read_to_string(PATH).map_err(|e| {
        tracing::warn!("Unable to read oom_score_adj: {e}");
        e.to_string()
    })?;
    s.trim()
        .parse()
        .map_err(|_| format!("bad oom_score_adj {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_mode_role_and_base() {
        let v = [10, 20, 30];
        assert_eq!(target(Mode::Relative, v, 0, 5), 15);
        assert_eq!(target(Mode::Relative, v, 1, 5), 25);
        assert_eq!(target(Mode::Absolute, v, 1, 5), 20);
        assert_eq!(target(Mode::Absolute, [2000, 0, 0], 0, 0), 1000);
        assert_eq!(target(Mode::Relative, [-2000, 0, 0], 0, 900), -1000);
        assert_eq!(parse_values("1 2 3"), [1, 2, 3]);
        assert_eq!(Mode::from_setting("yes"), Mode::Relative);
        assert_eq!(Mode::from_setting("no"), Mode::Off);
    }
}
