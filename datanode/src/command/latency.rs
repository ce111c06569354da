//! LATENCY LATEST / HISTORY / RESET / GRAPH / DOCTOR / HISTOGRAM.

use super::{Args, Ctx};

pub fn latest(ctx: &mut Ctx, _a: &Args) {
    let events = ctx.srv.latency.snapshot();
    ctx.r.array(events.len());
    for (name, e) in events {
        let (t, ms) = e.samples.last().copied().unwrap_or((0, 0));
        ctx.r.array(4);
        ctx.r.bulk(name.as_bytes());
        ctx.r.int(t);
        ctx.r.int(ms as i64);
        ctx.r.int(e.max as i64);
    }
}

pub fn history(ctx: &mut Ctx, a: &Args) {
    let samples = ctx
        .srv
        .latency
        .get(a.get(2))
        .map(|e| e.samples)
        .unwrap_or_default();
    ctx.r.array(samples.len());
    for (t, ms) in samples {
        ctx.r.array(2);
        ctx.r.int(t);
        ctx.r.int(ms as i64);
    }
}

pub fn reset(ctx: &mut Ctx, a: &Args) {
    let names: Vec<&[u8]> = a.iter().skip(2).collect();
    let n = ctx.srv.latency.reset(&names);
    ctx.r.int(n as i64);
}

/// An ASCII chart of an event's samples: one column per sample, scaled
/// between the lowest and highest, with each sample's age below it.
pub fn graph(ctx: &mut Ctx, a: &Args) {
    let name = a.get(2);
    let Some(e) = ctx.srv.latency.get(name).filter(|e| !e.samples.is_empty()) else {
        return ctx.r.error(&format!(
            "ERR No samples available for event '{}'",
            String::from_utf8_lossy(name)
        ));
    };
    const ROWS: u64 = 4;
    let lo = e.samples.iter().map(|s| s.1).min().unwrap_or(0);
    let hi = e.samples.iter().map(|s| s.1).max().unwrap_or(0);
    let mut text = format!(
        "{} - high {hi} ms, low {lo} ms (all time high {} ms)\n{}\n",
        String::from_utf8_lossy(name),
        e.max,
        "-".repeat(80)
    );
    let level = |ms: u64| {
        if hi == lo {
            ROWS
        } else {
            1 + (ms - lo) * (ROWS - 1) / (hi - lo)
        }
    };
    for row in (1..=ROWS).rev() {
        let line: String = e
            .samples
            .iter()
            .map(|s| if level(s.1) >= row { '#' } else { ' ' })
            .collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let now = crate::keyspace::now_ms() / 1000;
    let ages: Vec<String> = e
        .samples
        .iter()
        .map(|s| format!("{}s", (now - s.0).max(0)))
        .collect();
    text.push_str(&ages.join(" "));
    text.push('\n');
    ctx.r.verbatim(text.as_bytes());
}

pub fn doctor(ctx: &mut Ctx, _a: &Args) {
    let events = ctx.srv.latency.snapshot();
    let threshold = ctx
        .srv
        .latency
        .threshold_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut text = String::new();
    if threshold == 0 {
        text.push_str("The latency monitor is off: set latency-monitor-threshold to a number of milliseconds (CONFIG SET latency-monitor-threshold 100) to record events that take at least that long.\n");
    }
    if events.is_empty() {
        text.push_str("No latency events were recorded: no command or background job took longer than the threshold.\n");
    } else {
        text.push_str("Latency events recorded:\n\n");
        for (i, (name, e)) in events.iter().enumerate() {
            let n = e.samples.len() as u64;
            let avg = e.samples.iter().map(|s| s.1).sum::<u64>() / n.max(1);
            text.push_str(&format!(
                "{}. {name}: {n} spikes, average {avg} ms, worst {} ms.\n",
                i + 1,
                e.max
            ));
        }
        text.push_str(
            "\nSLOWLOG GET shows which commands were slow; LATENCY HISTORY <event> shows when.\n",
        );
        if events.keys().any(|n| n.starts_with("aof-")) {
            text.push_str("The AOF's writes or fsyncs were slow: look at the disk (another process writing to it, a saturated or failing device). Under appendfsync always every write waits for its fsync; everysec lets clients go on meanwhile.\n");
        }
    }
    ctx.r.verbatim(text.as_bytes());
}

pub fn histogram(ctx: &mut Ctx, a: &Args) {
    let names: Vec<&[u8]> = a.iter().skip(2).collect();
    let hs = crate::server::cmdstats::histograms(&names);
    ctx.r.map(hs.len());
    for h in hs {
        ctx.r.bulk(h.name.as_bytes());
        ctx.r.map(2);
        ctx.r.bulk(b"calls");
        ctx.r.int(h.calls as i64);
        ctx.r.bulk(b"histogram_usec");
        ctx.r.map(h.cdf.len());
        for (us, n) in h.cdf {
            ctx.r.int(us as i64);
            ctx.r.int(n as i64);
        }
    }
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "LATENCY",
        &[
            "DOCTOR",
            "    Describe the latency events recorded and what they may mean.",
            "GRAPH <event>",
            "    Draw an ASCII chart of an event's recent samples.",
            "HISTOGRAM [<command> ...]",
            "    Each command's latency distribution (every command when none is named).",
            "HISTORY <event>",
            "    The event's samples: [time, milliseconds] pairs.",
            "LATEST",
            "    The latest and the highest sample of every event.",
            "RESET [<event> ...]",
            "    Forget the samples of the given events, or of all.",
        ],
    );
}
