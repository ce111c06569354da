//! Server commands: INFO, CONFIG, COMMAND, SLOWLOG, TIME, LASTSAVE, DEBUG,
//! MONITOR, BGREWRITEAOF, SHUTDOWN.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::connection::{help_reply, REDIS_VERSION};
use super::table;
use super::{eq_ic, Action, Args, Ctx, OwnedArgs, SYNTAX};
use crate::keyspace::{now_ms, Value};
use crate::server::stats::{Metric, Stats};

pub fn time(ctx: &mut Ctx, _a: &Args) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.r.array(2);
    ctx.r.bulk_int(d.as_secs() as i64);
    ctx.r.bulk_int(d.subsec_micros() as i64);
}

pub fn lastsave(ctx: &mut Ctx, _a: &Args) {
    let t = ctx.srv.stats.lastsave.load(Ordering::Relaxed);
    ctx.r.int(if t == 0 { ctx.srv.start_ms / 1000 } else { t });
}

/// Physical memory of the machine, from /proc/meminfo (0 if unreadable).
fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Open cluster bus links, inbound and outbound (INFO cluster_connections;
/// Redis estimates two per known node).
fn cluster_connections(srv: &crate::server::shared::Shared) -> usize {
    srv.cluster.get().map_or(0, |c| c.links_summary().0)
}

pub fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident ... in pages.
    let page = 4096u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|p| p * page)
        .unwrap_or(0)
}

/// jemalloc's (allocated, active, resident) bytes, freshly read.
pub fn jemalloc_stats() -> (u64, u64, u64) {
    use tikv_jemalloc_ctl::stats;
    let _ = tikv_jemalloc_ctl::epoch::advance();
    (
        stats::allocated::read().unwrap_or(0) as u64,
        stats::active::read().unwrap_or(0) as u64,
        stats::resident::read().unwrap_or(0) as u64,
    )
}

/// jemalloc's own statistics report (MEMORY MALLOC-STATS).
pub fn jemalloc_report() -> String {
    unsafe extern "C" fn write_cb(opaque: *mut libc::c_void, msg: *const libc::c_char) {
        // SAFETY: `opaque` is the &mut String passed below, alive for the
        // call; jemalloc hands a NUL-terminated message.
        let out = unsafe { &mut *(opaque as *mut String) };
        let msg = unsafe { std::ffi::CStr::from_ptr(msg) };
        out.push_str(&msg.to_string_lossy());
    }
    let mut out = String::new();
    // SAFETY: the callback only appends to `out`, which outlives the call.
    unsafe {
        tikv_jemalloc_sys::malloc_stats_print(
            Some(write_cb),
            &mut out as *mut String as *mut libc::c_void,
            std::ptr::null(),
        )
    };
    out
}

/// `jemalloc-bg-thread`: jemalloc's own threads return unused dirty pages
/// to the system in the background, as in Redis (on by default there).
pub fn jemalloc_background_thread(on: bool) {
    #[cfg(not(target_env = "msvc"))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(on) {
        tracing::warn!("Could not set jemalloc's background_thread to {on}: {e}");
    }
    #[cfg(target_env = "msvc")]
    let _ = on;
}

/// Returns unused dirty pages of every arena to the system (MEMORY PURGE).
pub fn jemalloc_purge() {
    // MALLCTL_ARENAS_ALL is 4096 in jemalloc 5.
    let name = b"arena.4096.purge\0";
    // SAFETY: a void mallctl: no input or output buffers.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr() as *const libc::c_char,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

pub fn allocated_bytes() -> u64 {
    #[cfg(not(target_env = "msvc"))]
    {
        let _ = tikv_jemalloc_ctl::epoch::advance();
        tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64
    }
    #[cfg(target_env = "msvc")]
    {
        0
    }
}

fn human(n: u64) -> String {
    let f = n as f64;
    if f < 1024.0 {
        format!("{n}B")
    } else if f < 1024.0 * 1024.0 {
        format!("{:.2}K", f / 1024.0)
    } else if f < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", f / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", f / 1024.0 / 1024.0 / 1024.0)
    }
}

fn cpu_times() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

pub fn info_text(ctx: &Ctx, sections: &[String]) -> String {
    let all = sections.is_empty()
        || sections
            .iter()
            .any(|s| s == "all" || s == "everything" || s == "default");
    let want = |s: &str| all || sections.iter().any(|x| x == s);
    let srv = ctx.srv;
    let cfg = srv.config.read();
    let mut o = String::new();
    let now = now_ms();
    let uptime = (now - srv.start_ms) / 1000;
    if want("server") {
        let _ = write!(
            o,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nslotkv_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:{}\r\nos:{} {}\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\ngcc_version:0.0.0\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\nlru_clock:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nio_threads_active:0\r\n",
            env!("CARGO_PKG_VERSION"),
            if cfg.cluster_enabled() { "cluster" } else { "standalone" },
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            srv.run_id,
            srv.actual_port.load(Ordering::Relaxed),
            now * 1000,
            uptime,
            uptime / 86400,
            srv.hot.hz.load(Ordering::Relaxed),
            srv.hot.configured_hz.load(Ordering::Relaxed),
            (now / 1000) & ((1 << 24) - 1),
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            cfg.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        );
        if let Some(ms) = crate::server::shutdown::in_milliseconds(now) {
            let _ = write!(o, "shutdown_in_milliseconds:{ms}\r\n");
        }
    }
    if want("clients") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        // Killed connections still winding down are not counted (Redis
        // frees them at once); the running one is until its reply. Nor
        // are the replicas' links, as Redis leaves them out.
        let n = srv
            .clients
            .lock()
            .values()
            .filter(|c| !c.killed.load(Ordering::Relaxed) || c.id == ctx.client.id)
            .filter(|c| c.role.load(Ordering::Relaxed) != crate::server::client::role::REPLICA)
            .count();
        let (peak_in, peak_out) = srv.stats.client_peaks.lock().max(now / 1000);
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{n}\r\ncluster_connections:{}\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:{peak_in}\r\nclient_recent_max_output_buffer:{peak_out}\r\nblocked_clients:{}\r\ntracking_clients:{}\r\nclients_in_timeout_table:{}\r\n",
            cluster_connections(srv),
            cfg.maxclients(),
            // Clients waiting out a CLIENT PAUSE count as blocked in Redis.
            srv.ks.blocking.clients.load(Ordering::Relaxed)
                + srv.pause.waiting.load(Ordering::Relaxed)
                + crate::server::shutdown::waiters(),
            srv.tracking.counts().clients,
            srv.ks.blocking.timed_waits(),
        );
    }
    if want("memory") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        let m = crate::server::memfigures::gather(srv);
        let (used, peak, startup) = (m.used, m.peak, m.startup);
        let (overhead, dataset, dataset_perc) = (m.total, m.dataset(), m.dataset_perc());
        let (repl_buffers, backlog, clients_slaves) = (m.repl_buffers, m.backlog, m.clients_slaves);
        let (clients, aof_buffer, cluster_links) =
            (m.clients_normal, m.aof_buffer, m.cluster_links);
        let (scripts_mem, functions_mem) = (m.lua_caches, m.functions_caches);
        let scripts_total = scripts_mem + functions_mem;
        let allocated = allocated_bytes();
        let rss = rss_bytes();
        let ratio = if used > 0 {
            rss as f64 / used as f64
        } else {
            0.0
        };
        let not_counted = crate::server::evict::not_counted(srv);
        let maxmemory = cfg.int("maxmemory").max(0) as u64;
        let (_, active, resident) = jemalloc_stats();
        let system = total_system_memory();
        let div = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        // The pool's interpreters hold scripts and libraries together:
        // the libraries' share is the functions' VM, the rest eval's.
        let vm_total = srv.scripts.lua_memory() as u64;
        let vm_functions = (srv.scripts.functions_vm_memory() as u64).min(vm_total);
        let lua = vm_total - vm_functions;
        let cached = srv.scripts.cache.len();
        let (n_functions, n_libraries) = {
            let set = srv.scripts.functions.read();
            (set.function_count(), set.library_count())
        };
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nused_memory_peak_perc:{:.2}%\r\nused_memory_overhead:{overhead}\r\nused_memory_startup:{startup}\r\nused_memory_dataset:{dataset}\r\nused_memory_dataset_perc:{dataset_perc:.2}%\r\nallocator_allocated:{allocated}\r\nallocator_active:{active}\r\nallocator_resident:{resident}\r\ntotal_system_memory:{system}\r\ntotal_system_memory_human:{}\r\nused_memory_lua:{lua}\r\nused_memory_vm_eval:{lua}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{scripts_mem}\r\nnumber_of_cached_scripts:{cached}\r\nnumber_of_functions:{n_functions}\r\nnumber_of_libraries:{n_libraries}\r\nused_memory_vm_functions:{vm_functions}\r\nused_memory_vm_total:{vm_total}\r\nused_memory_vm_total_human:{}\r\nused_memory_functions:{functions_mem}\r\nused_memory_scripts:{scripts_total}\r\nused_memory_scripts_human:{}\r\nmaxmemory:{maxmemory}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nallocator_frag_ratio:{:.2}\r\nallocator_frag_bytes:{}\r\nallocator_rss_ratio:{:.2}\r\nallocator_rss_bytes:{}\r\nrss_overhead_ratio:{:.2}\r\nrss_overhead_bytes:{}\r\nmem_fragmentation_ratio:{ratio:.2}\r\nmem_fragmentation_bytes:{}\r\nmem_not_counted_for_evict:{not_counted}\r\nmem_replication_backlog:{backlog}\r\nmem_total_replication_buffers:{repl_buffers}\r\nmem_clients_slaves:{clients_slaves}\r\nmem_clients_normal:{clients}\r\nmem_cluster_links:{cluster_links}\r\nmem_aof_buffer:{aof_buffer}\r\nmem_allocator:jemalloc-5.3.0\r\nactive_defrag_running:0\r\nlazyfree_pending_objects:{}\r\nlazyfreed_objects:{}\r\n",
            human(used),
            human(rss),
            human(peak),
            m.peak_perc(),
            human(system),
            human(lua),
            human(vm_total),
            human(scripts_total),
            human(maxmemory),
            cfg.maxmemory_policy(),
            div(active, allocated),
            active as i64 - allocated as i64,
            div(resident, active),
            resident as i64 - active as i64,
            div(rss, resident),
            rss as i64 - resident as i64,
            rss as i64 - used as i64,
            crate::keyspace::lazyfree::pending(),
            crate::keyspace::lazyfree::freed(),
        );
    }
    if want("persistence") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        let aof = srv.aof.lock();
        let (rewriting, size, base) = aof
            .as_ref()
            .map(|a| (a.rewriting(), a.current_size(), a.base_size()))
            .unwrap_or((false, 0, 0));
        drop(aof);
        let rewriting = rewriting || srv.base_rewrite_running.load(Ordering::SeqCst);
        let scheduled = srv.aof_rewrite_scheduled.load(Ordering::SeqCst);
        let save_total = Stats::get(&srv.stats.save_keys_total);
        let save_done = Stats::get(&srv.stats.save_keys_processed).min(save_total);
        let _ = write!(
            o,
            "# Persistence\r\nloading:{}\r\nasync_loading:{}\r\ncurrent_cow_peak:{cow}\r\ncurrent_cow_size:{cow}\r\ncurrent_cow_size_age:0\r\ncurrent_fork_perc:{:.2}\r\ncurrent_save_keys_processed:{}\r\ncurrent_save_keys_total:{}\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nrdb_last_cow_size:{}\r\nrdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\naof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{}\r\naof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_rewrites_consecutive_failures:{}\r\naof_last_write_status:{}\r\naof_last_cow_size:{}\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n",
            srv.repl.loading.load(Ordering::Relaxed) as u8,
            srv.repl.async_loading.load(Ordering::Relaxed) as u8,
            match save_total {
                0 => 0.0,
                t => save_done as f64 / t as f64 * 100.0,
            },
            save_done,
            save_total,
            Stats::get(&srv.stats.dirty),
            (srv.bgsave_running.load(Ordering::Relaxed)
                || crate::replication::master::sync_snapshot_running()) as u8,
            srv.stats.lastsave.load(Ordering::Relaxed).max(srv.start_ms / 1000),
            if srv.stats.rdb_bgsave_failed.load(Ordering::Relaxed) {
                "err"
            } else {
                "ok"
            },
            srv.stats.rdb_last_bgsave_secs.load(Ordering::Relaxed),
            match srv.stats.rdb_bgsave_started_s.load(Ordering::Relaxed) {
                0 => -1,
                began => (now / 1000 - began).max(0),
            },
            Stats::get(&srv.stats.rdb_saves),
            Stats::get(&srv.stats.rdb_last_cow_size),
            Stats::get(&srv.stats.rdb_last_load_keys_expired),
            Stats::get(&srv.stats.rdb_last_load_keys_loaded),
            cfg.appendonly() as u8,
            rewriting as u8,
            scheduled as u8,
            srv.stats.aof_last_rewrite_secs.load(Ordering::Relaxed),
            match srv.stats.aof_rewrite_started_s.load(Ordering::Relaxed) {
                0 => -1,
                began => (now / 1000 - began).max(0),
            },
            if srv.stats.aof_rewrite_failed.load(Ordering::Relaxed) {
                "err"
            } else {
                "ok"
            },
            Stats::get(&srv.stats.aof_rewrites),
            Stats::get(&srv.stats.aof_rewrite_failures),
            if crate::persistence::aof_failing(srv) {
                "err"
            } else {
                "ok"
            },
            Stats::get(&srv.stats.aof_last_cow_size),
            cow = srv.log.cow_bytes.load(Ordering::Relaxed),
        );
        if cfg.appendonly() {
            let _ = write!(
                o,
                "aof_current_size:{size}\r\naof_base_size:{base}\r\naof_pending_rewrite:{}\r\naof_buffer_length:{}\r\naof_pending_bio_fsync:{}\r\naof_delayed_fsync:{}\r\n",
                scheduled as u8,
                srv.log.with_buf(|b| b.buf.len()),
                srv.hot.aof_fsync_running.load(Ordering::Relaxed) as u8,
                Stats::get(&srv.stats.aof_delayed_fsync),
            );
        }
        // Async loading too: Redis counts it as loading here.
        if srv.repl.loading.load(Ordering::Relaxed)
            || srv.repl.async_loading.load(Ordering::Relaxed)
        {
            o.push_str(&crate::persistence::load_progress(now));
        }
    }
    if want("stats") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        let st = &srv.stats;
        let exceeded = crate::server::evict::exceeded_time_ms(srv);
        let trk = srv.tracking.counts();
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ntotal_net_repl_input_bytes:{}\r\ntotal_net_repl_output_bytes:{}\r\ninstantaneous_input_kbps:{}\r\ninstantaneous_output_kbps:{}\r\ninstantaneous_input_repl_kbps:{}\r\ninstantaneous_output_repl_kbps:{}\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nexpired_stale_perc:{}\r\nexpired_time_cap_reached_count:{}\r\nexpire_cycle_cpu_milliseconds:{}\r\nevicted_keys:{}\r\nevicted_clients:{}\r\ntotal_eviction_exceeded_time:{}\r\ncurrent_eviction_exceeded_time:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\nlatest_fork_usec:{}\r\ntotal_forks:{}\r\nmigrate_cached_sockets:{}\r\nslave_expires_tracked_keys:{}\r\nactive_defrag_hits:0\r\nactive_defrag_misses:0\r\nactive_defrag_key_hits:0\r\nactive_defrag_key_misses:0\r\ntotal_active_defrag_time:0\r\ncurrent_active_defrag_time:0\r\ntracking_total_keys:{}\r\ntracking_total_items:{}\r\ntracking_total_prefixes:{}\r\nunexpected_error_replies:{}\r\ntotal_error_replies:{}\r\ndump_payload_sanitizations:{}\r\ntotal_reads_processed:{}\r\ntotal_writes_processed:{}\r\nio_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\nreply_buffer_shrinks:{}\r\nreply_buffer_expands:{}\r\n",
            Stats::get(&st.connections_received),
            Stats::get(&st.commands),
            st.instantaneous(Metric::Commands),
            Stats::get(&st.net.input_bytes),
            Stats::get(&st.net.output_bytes),
            Stats::get(&st.net_repl_input_bytes),
            Stats::get(&st.net_repl_output_bytes),
            st.instantaneous_kbps(Metric::NetInput),
            st.instantaneous_kbps(Metric::NetOutput),
            st.instantaneous_kbps(Metric::NetReplInput),
            st.instantaneous_kbps(Metric::NetReplOutput),
            Stats::get(&st.rejected_connections),
            Stats::get(&st.sync_full),
            Stats::get(&st.sync_partial_ok),
            Stats::get(&st.sync_partial_err),
            Stats::get(&st.expired_keys) + srv.ks.expiry.expired.load(Ordering::Relaxed),
            st.expired_stale_perc(),
            Stats::get(&st.expired_time_cap_reached),
            Stats::get(&st.expire_cycle_us) / 1000,
            Stats::get(&st.evicted_keys),
            Stats::get(&st.evicted_clients),
            exceeded.0,
            exceeded.1,
            Stats::get(&st.keyspace_hits),
            Stats::get(&st.keyspace_misses),
            srv.pubsub.channels(None).len(),
            srv.pubsub.numpat(),
            srv.pubsub.shard_channels(None).len(),
            Stats::get(&st.latest_fork_usec),
            Stats::get(&st.total_forks),
            srv.migrate_sockets.len(),
            srv.repl.own_expires.count(),
            trk.keys,
            trk.items,
            trk.prefixes,
            Stats::get(&st.unexpected_error_replies),
            Stats::get(&st.total_error_replies),
            crate::persistence::rdb::object::SANITIZATIONS.load(Ordering::Relaxed),
            Stats::get(&st.net.reads),
            Stats::get(&st.net.writes),
            crate::server::replybuf::SHRINKS.load(std::sync::atomic::Ordering::Relaxed),
            crate::server::replybuf::EXPANDS.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    if want("replication") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        o.push_str(&crate::replication::info_section(srv, now));
    }
    if want("cpu") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        let (sys, user) = cpu_times();
        let _ = write!(
            o,
            "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\nused_cpu_sys_main_thread:{sys:.6}\r\nused_cpu_user_main_thread:{user:.6}\r\n"
        );
    }
    let everything = sections.iter().any(|s| s == "all" || s == "everything");
    if want("modules") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        o.push_str("# Modules\r\n");
    }
    if sections.iter().any(|s| s == "commandstats") || everything {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        o.push_str("# Commandstats\r\n");
        o.push_str(&crate::server::cmdstats::commandstats());
    }
    if want("errorstats") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        o.push_str("# Errorstats\r\n");
        o.push_str(&crate::server::cmdstats::errorstats());
    }
    // Not a default section, as in Redis.
    if sections.iter().any(|s| s == "latencystats") || everything {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        o.push_str("# Latencystats\r\n");
        if cfg.value("latency-tracking") == "yes" {
            let percentiles: Vec<f64> = cfg
                .value("latency-tracking-info-percentiles")
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            o.push_str(&crate::server::cmdstats::latencystats(&percentiles));
        }
    }
    if want("cluster") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        let _ = write!(
            o,
            "# Cluster\r\ncluster_enabled:{}\r\n",
            cfg.cluster_enabled() as u8
        );
        if cfg.cluster_enabled() {
            // Atomic slot migration's counters (Valkey's, and progress).
            o.push_str(&super::slotmig::info_fields(srv));
        }
    }
    if want("keyspace") {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        o.push_str("# Keyspace\r\n");
        for db in srv.ks.existing() {
            let keys = db.size();
            if keys == 0 {
                continue;
            }
            let _ = write!(
                o,
                "db{}:keys={},expires={},avg_ttl=0\r\n",
                db.index,
                keys,
                db.expires_count()
            );
        }
    }
    o
}

pub fn info(ctx: &mut Ctx, a: &Args) {
    let sections: Vec<String> = a
        .iter()
        .skip(1)
        .map(|s| String::from_utf8_lossy(s).to_lowercase())
        .collect();
    let text = info_text(ctx, &sections);
    ctx.r.verbatim(text.as_bytes());
}

pub fn config_get(ctx: &mut Ctx, a: &Args) {
    let mut pairs: Vec<(String, String)> = Vec::new();
    {
        let cfg = ctx.srv.config.read();
        for p in a.iter().skip(2) {
            for kv in cfg.get(p) {
                if !pairs.iter().any(|(k, _)| *k == kv.0) {
                    pairs.push(kv);
                }
            }
        }
    }
    ctx.r.map(pairs.len());
    for (k, v) in pairs {
        ctx.r.bulk(k.as_bytes());
        ctx.r.bulk(v.as_bytes());
    }
}

/// An OS error as C's strerror words it (Redis's messages quote that).
fn os_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        // SAFETY: strerror returns a pointer to a NUL-terminated string.
        Some(code) => unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }
            .to_string_lossy()
            .into_owned(),
        None => e.to_string(),
    }
}

pub fn config_set(ctx: &mut Ctx, a: &Args) {
    if !a.len().is_multiple_of(2) {
        return ctx
            .r
            .error("ERR wrong number of arguments for 'config|set' command");
    }
    let pairs: Vec<(&[u8], &[u8])> = (2..a.len())
        .step_by(2)
        .map(|i| (a.get(i), a.get(i + 1)))
        .collect();
    let repl = &ctx.srv.repl;
    let loading =
        repl.loading.load(Ordering::Relaxed) || repl.async_loading.load(Ordering::Relaxed);
    if loading && crate::config::Config::denied_while_loading(&pairs) {
        return ctx.r.error(super::LOADING);
    }
    let before = ctx.srv.config.read().clone();
    let protected_ok = match before.value("enable-protected-configs") {
        "yes" => true,
        "local" => ctx.client.info.addr.is_local(),
        _ => false,
    };
    let res = ctx.srv.config.write().set(&pairs, protected_ok);
    match res {
        Ok(changed) => {
            let port_changed = changed.iter().any(|c| c == "port")
                && ctx.srv.config.read().port() as u64
                    != ctx.srv.actual_port.load(Ordering::Relaxed);
            if port_changed {
                if let Err(e) = crate::server::listen::rebind(ctx.srv) {
                    // Applying failed: every setting of this call goes back.
                    *ctx.srv.config.write() = before;
                    let name = pairs
                        .iter()
                        .map(|(k, _)| String::from_utf8_lossy(k))
                        .find(|k| k.eq_ignore_ascii_case("port"))
                        .unwrap_or_default();
                    return ctx.r.error(&format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - Unable to listen on this port: {}",
                        os_error_text(&e)
                    ));
                }
            }
            if changed
                .iter()
                .any(|c| c == "oom-score-adj" || c == "oom-score-adj-values")
            {
                if let Err(e) = crate::server::oom::apply(ctx.srv) {
                    // As Redis: the call's settings go back, and so does
                    // the score they set.
                    *ctx.srv.config.write() = before;
                    let _ = crate::server::oom::apply(ctx.srv);
                    let name = pairs
                        .iter()
                        .map(|(k, _)| String::from_utf8_lossy(k))
                        .find(|k| k.to_ascii_lowercase().starts_with("oom-score-adj"))
                        .unwrap_or_default();
                    tracing::warn!("Failed to set current oom_score_adj: {e}");
                    return ctx.r.error(&format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - Failed to set current oom_score_adj. Check server logs."
                    ));
                }
            }
            crate::server::apply_config_change(ctx.srv, &changed);
            if changed.iter().any(|c| c == "bind") && !port_changed {
                let name = pairs
                    .iter()
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .find(|k| k.eq_ignore_ascii_case("bind"))
                    .unwrap_or_default();
                if ctx.client.in_exec {
                    // No waiting inside a transaction: the new addresses
                    // are bound before the old close (a same-port address
                    // already bound then fails).
                    if crate::server::listen::rebind(ctx.srv).is_err() {
                        *ctx.srv.config.write() = before;
                        crate::server::apply_config_change(ctx.srv, &changed);
                        return ctx.r.error(&bind_failed(&name));
                    }
                } else {
                    // The connection replies once the listeners moved.
                    ctx.actions.push(Action::Rebind {
                        before: Box::new(before),
                        changed,
                        name,
                    });
                    return;
                }
            }
            ctx.r.ok()
        }
        Err(e) => ctx.r.error(&e),
    }
}

/// CONFIG SET bind's error when the addresses cannot be bound, as Redis.
pub fn bind_failed(name: &str) -> String {
    format!("ERR CONFIG SET failed (possibly related to argument '{name}') - Failed to bind to specified addresses.")
}

/// LOLWUT [VERSION v]: Redis 7.0 has no piece of its own and answers with
/// its version line; the generative pictures Redis draws for VERSION 5 and
/// 6 are not reproduced, those get the same line.
pub fn lolwut(ctx: &mut Ctx, a: &Args) {
    if a.len() >= 3 && eq_ic(a.get(1), "VERSION") && crate::resp::parse_i64(a.get(2)).is_none() {
        return ctx.r.error(super::NOT_INT);
    }
    ctx.r
        .verbatim(format!("Redis ver. {REDIS_VERSION}\n").as_bytes());
}

pub fn config_resetstat(ctx: &mut Ctx, _a: &Args) {
    let st = &ctx.srv.stats;
    for c in [
        &st.commands,
        &st.connections_received,
        &st.rejected_connections,
        &st.sync_full,
        &st.sync_partial_ok,
        &st.sync_partial_err,
        &st.expired_keys,
        &st.evicted_keys,
        &st.eviction_exceeded_total_us,
        &st.keyspace_hits,
        &st.keyspace_misses,
        &st.net.input_bytes,
        &st.net.output_bytes,
        &st.net_repl_input_bytes,
        &st.net_repl_output_bytes,
        &st.net.reads,
        &st.net.writes,
        &st.expire_cycle_us,
        &st.expired_time_cap_reached,
        &st.expired_stale_perc_bits,
        &st.rdb_saves,
        &st.aof_rewrites,
        &st.aof_rewrite_failures,
        &st.total_error_replies,
        &st.evicted_clients,
    ] {
        c.store(0, Ordering::Relaxed);
    }
    crate::keyspace::lazyfree::reset_stats();
    st.eviction_exceeded_since_us.store(0, Ordering::Relaxed);
    crate::persistence::rdb::object::SANITIZATIONS.store(0, Ordering::Relaxed);
    st.aof_delayed_fsync.store(0, Ordering::Relaxed);
    st.total_forks.store(0, Ordering::Relaxed);
    st.latest_fork_usec.store(0, Ordering::Relaxed);
    ctx.srv.ks.expiry.expired.store(0, Ordering::Relaxed);
    st.reset_ops(crate::keyspace::now_ms());
    crate::server::replybuf::SHRINKS.store(0, Ordering::Relaxed);
    crate::server::replybuf::EXPANDS.store(0, Ordering::Relaxed);
    // The slow log stays, as in Redis (SLOWLOG RESET clears it).
    crate::server::cmdstats::reset();
    ctx.r.ok();
}

pub fn config_rewrite(ctx: &mut Ctx, _a: &Args) {
    match rewrite_config_file(ctx, false) {
        Ok(()) => ctx.r.ok(),
        Err(e) => ctx.r.error(&format!("ERR {e}")),
    }
}

/// Rewrites the configuration file; `force_all` writes every directive,
/// defaults included (DEBUG CONFIG-REWRITE-FORCE-ALL).
fn rewrite_config_file(ctx: &mut Ctx, force_all: bool) -> Result<(), crate::config::ConfigError> {
    // Without an ACL file, every user is written as a `user` line (as
    // Redis does); with one, the users live there.
    let users: Vec<String> = if ctx.srv.config.read().value("aclfile").is_empty() {
        let cat = super::acl::catalog();
        ctx.srv
            .acl
            .users()
            .iter()
            .map(|u| {
                format!(
                    "user {} {}",
                    String::from_utf8_lossy(&u.name),
                    String::from_utf8_lossy(&u.describe(&cat))
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let rt = crate::config::rewrite::Runtime {
        users: &users,
        master: ctx.srv.repl.master_addr(),
        force_all,
    };
    let cfg = ctx.srv.config.read();
    cfg.rewrite(&rt)
}

pub fn config_help(ctx: &mut Ctx, _a: &Args) {
    help_reply(
        ctx,
        "CONFIG",
        &[
            "GET <pattern>",
            "    Return the parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value> [<directive> <value> ...]",
            "    Change configuration parameters at runtime.",
            "RESETSTAT",
            "    Reset the statistics INFO reports.",
            "REWRITE",
            "    Write the running configuration back to the config file.",
        ],
    );
}

/// `COMMAND` alone (with a subcommand, dispatch goes to the subcommand).
pub fn command_root(ctx: &mut Ctx, _a: &Args) {
    command_all(ctx)
}

/// COMMAND with no subcommand: every command's entry.
pub fn command_all(ctx: &mut Ctx) {
    let n = super::meta::all().count();
    ctx.r.array(n);
    for (_, m) in super::meta::all() {
        m.write(&mut ctx.r);
    }
}

pub fn command_count(ctx: &mut Ctx, _a: &Args) {
    ctx.r.int(super::meta::all().count() as i64);
}

/// Every command and subcommand (`config|get`), as COMMAND LIST names them.
fn all_with_subcommands() -> Vec<(&'static str, &'static super::meta::M)> {
    use super::meta::M;
    let mut v = Vec::new();
    for (name, m) in super::meta::all() {
        v.push((*name, m));
        if let M::Array(f) = m {
            if let Some(M::Array(subs) | M::Set(subs)) = f.get(9) {
                for sub in subs.iter() {
                    if let M::Array(sf) = sub {
                        if let Some(M::Bulk(n)) = sf.first() {
                            v.push((*n, sub));
                        }
                    }
                }
            }
        }
    }
    v
}

pub fn command_list(ctx: &mut Ctx, a: &Args) {
    let all = all_with_subcommands();
    if a.len() > 2 {
        // FILTERBY MODULE|ACLCAT|PATTERN
        if a.len() != 5 || !eq_ic(a.get(2), "FILTERBY") {
            return ctx.r.error(SYNTAX);
        }
        let (how, arg) = (a.get(3), a.get(4));
        if !(eq_ic(how, "PATTERN") || eq_ic(how, "ACLCAT") || eq_ic(how, "MODULE")) {
            return ctx.r.error(SYNTAX);
        }
        let names: Vec<&str> = all
            .iter()
            .filter(|(n, m)| {
                if eq_ic(how, "PATTERN") {
                    crate::glob::glob_match(arg, n.as_bytes(), true)
                } else if eq_ic(how, "ACLCAT") {
                    acl_categories(m).iter().any(|c| {
                        c.trim_start_matches('@')
                            .as_bytes()
                            .eq_ignore_ascii_case(arg)
                    })
                } else {
                    false
                }
            })
            .map(|(n, _)| *n)
            .collect();
        ctx.r.array(names.len());
        for n in names {
            ctx.r.bulk(n.as_bytes());
        }
        return;
    }
    ctx.r.array(all.len());
    for (name, _) in all {
        ctx.r.bulk(name.as_bytes());
    }
}

fn acl_categories(m: &super::meta::M) -> Vec<&'static str> {
    use super::meta::M;
    match m {
        M::Array(f) if f.len() > 6 => match &f[6] {
            M::Set(v) | M::Array(v) => v
                .iter()
                .filter_map(|x| match x {
                    M::Simple(s) | M::Bulk(s) => Some(*s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

pub fn command_info(ctx: &mut Ctx, a: &Args) {
    if a.len() == 2 {
        return command_all(ctx);
    }
    ctx.r.array(a.len() - 2);
    for name in a.iter().skip(2) {
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        match super::meta::info(&lower) {
            Some(m) => m.write(&mut ctx.r),
            None => ctx.r.null(),
        }
    }
}

pub fn command_docs(ctx: &mut Ctx, a: &Args) {
    if a.len() == 2 {
        let n = super::meta::all_docs().count();
        ctx.r.map(n);
        for (name, m) in super::meta::all_docs() {
            ctx.r.bulk(name.as_bytes());
            m.write(&mut ctx.r);
        }
        return;
    }
    // Unknown names are left out, as Redis does.
    let found: Vec<(String, &super::meta::M)> = a
        .iter()
        .skip(2)
        .filter_map(|n| {
            let lower = String::from_utf8_lossy(n).to_ascii_lowercase();
            super::meta::docs(&lower).map(|m| (lower, m))
        })
        .collect();
    ctx.r.map(found.len());
    for (name, m) in found {
        ctx.r.bulk(name.as_bytes());
        m.write(&mut ctx.r);
    }
}

/// The keys (and their spec flags) of the command in `a[2..]`, or the
/// error Redis gives. Shared by COMMAND GETKEYS and GETKEYSANDFLAGS.
fn command_keys(ctx: &mut Ctx, a: &Args) -> Option<(Vec<super::keyspec::KeyRef>, OwnedArgs)> {
    let rest: Vec<&[u8]> = a.iter().skip(2).collect();
    let owned = OwnedArgs::from_slices(&rest);
    let Some(mut cmd) = table::lookup(rest[0]) else {
        ctx.r.error("ERR Invalid command specified");
        return None;
    };
    if !cmd.subs.is_empty() && rest.len() >= 2 {
        match table::lookup_sub(cmd, rest[1]) {
            Some(sc) => cmd = sc,
            None => {
                ctx.r.error("ERR Invalid command specified");
                return None;
            }
        }
    }
    let info = super::keyspec::info_of(cmd.name);
    let has_keys = cmd.keys_fn.is_some()
        || cmd.first_key > 0
        || info.is_some_and(|i| {
            super::keyspec::keys(i, &owned.args(), &|| Vec::new()).is_ok_and(|k| !k.is_empty())
                || super::keyspec::has_flag(i, "movablekeys")
        });
    if !has_keys {
        ctx.r.error("ERR The command has no key arguments");
        return None;
    }
    let arity_ok = if cmd.arity >= 0 {
        rest.len() == cmd.arity as usize
    } else {
        rest.len() >= (-cmd.arity) as usize
    };
    if !arity_ok {
        ctx.r
            .error("ERR Invalid number of arguments specified for command");
        return None;
    }
    let args = owned.args();
    let fallback = || cmd.key_indexes(&args);
    let keys = match info {
        Some(i) => super::keyspec::keys(i, &args, &fallback),
        None => Ok(fallback()
            .into_iter()
            .map(|index| super::keyspec::KeyRef {
                index,
                flags: Vec::new(),
            })
            .collect()),
    };
    match keys {
        Ok(k) if !k.is_empty() => Some((k, owned)),
        Ok(_) if info.is_some_and(|i| super::keyspec::has_flag(i, "no_mandatory_keys")) => {
            Some((Vec::new(), owned))
        }
        _ => {
            ctx.r.error("ERR Invalid arguments specified for command");
            None
        }
    }
}

pub fn command_getkeys(ctx: &mut Ctx, a: &Args) {
    let Some((keys, owned)) = command_keys(ctx, a) else {
        return;
    };
    let args = owned.args();
    ctx.r.array(keys.len());
    for k in keys {
        ctx.r.bulk(args.get(k.index));
    }
}

pub fn command_getkeysandflags(ctx: &mut Ctx, a: &Args) {
    let Some((keys, owned)) = command_keys(ctx, a) else {
        return;
    };
    let args = owned.args();
    ctx.r.array(keys.len());
    for k in keys {
        ctx.r.array(2);
        ctx.r.bulk(args.get(k.index));
        ctx.r.array(k.flags.len());
        for f in k.flags {
            ctx.r.simple(f);
        }
    }
}

pub fn command_help(ctx: &mut Ctx, _a: &Args) {
    help_reply(
        ctx,
        "COMMAND",
        &[
            "(no subcommand)",
            "    Describe every command.",
            "COUNT",
            "    Number of commands.",
            "DOCS [<command-name> ...]",
            "    Documentation of the given commands, or of all.",
            "GETKEYS <full-command>",
            "    The key arguments of a full command.",
            "GETKEYSANDFLAGS <full-command>",
            "    The key arguments of a full command, each with its access flags.",
            "INFO [<command-name> ...]",
            "    Details of the given commands, or of all.",
            "LIST",
            "    Names of all commands.",
        ],
    );
}

pub fn slowlog_get(ctx: &mut Ctx, a: &Args) {
    let mut count = 10i64;
    if a.len() == 3 {
        let Some(n) = crate::resp::parse_i64(a.get(2)) else {
            return ctx
                .r
                .error("ERR count should be greater than or equal to -1");
        };
        if n < -1 {
            return ctx
                .r
                .error("ERR count should be greater than or equal to -1");
        }
        count = if n == -1 { i64::MAX } else { n };
    } else if a.len() > 3 {
        return ctx.r.error(SYNTAX);
    }
    let log = ctx.srv.slowlog.lock();
    let n = (count as usize).min(log.entries.len());
    ctx.r.array(n);
    for e in log.entries.iter().take(n) {
        ctx.r.array(6);
        ctx.r.int(e.id as i64);
        ctx.r.int(e.time_s);
        ctx.r.int(e.duration_us);
        ctx.r.array(e.args.len());
        for x in &e.args {
            ctx.r.bulk(x);
        }
        ctx.r.bulk(e.peer.as_bytes());
        ctx.r.bulk(&e.name);
    }
}

pub fn slowlog_len(ctx: &mut Ctx, _a: &Args) {
    let n = ctx.srv.slowlog.lock().entries.len();
    ctx.r.int(n as i64);
}

pub fn slowlog_reset(ctx: &mut Ctx, _a: &Args) {
    ctx.srv.slowlog.lock().entries.clear();
    crate::server::cmdstats::reset();
    ctx.r.ok();
}

pub fn slowlog_help(ctx: &mut Ctx, _a: &Args) {
    help_reply(
        ctx,
        "SLOWLOG",
        &[
            "GET [<count>]",
            "    The newest <count> slow log entries (default 10, -1 for all).",
            "LEN",
            "    Number of entries in the slow log.",
            "RESET",
            "    Empty the slow log.",
        ],
    );
}

fn debug_allowed(ctx: &Ctx) -> bool {
    let mode = ctx.srv.config.read().enable_debug_command();
    match mode.as_str() {
        "yes" => true,
        "local" => ctx.client.info.addr.is_local(),
        _ => false,
    }
}

/// DEBUG CLUSTERLINK KILL to|from|all <node-id>: closes our links with a
/// node (tests use it to break a link on purpose).
fn debug_clusterlink_kill(ctx: &mut Ctx, a: &Args) {
    let Some(cl) = ctx.srv.cluster.get().cloned() else {
        return ctx
            .r
            .error("ERR Debug option only available for cluster mode enabled setup!");
    };
    let dir = a.get(3).to_ascii_lowercase();
    let (to, from) = match dir.as_slice() {
        b"to" => (true, false),
        b"from" => (false, true),
        b"all" => (true, true),
        _ => {
            return ctx.r.error(&format!(
                "ERR Unknown direction {}",
                String::from_utf8_lossy(a.get(3))
            ))
        }
    };
    let id = a.get(4).to_vec();
    let found = cl.with(ctx.srv, |st| {
        let Some(n) = crate::cluster::NodeId::parse(&id).and_then(|i| st.nodes.get(&i)) else {
            return false;
        };
        let links: Vec<u64> = [to.then_some(n.link), from.then_some(n.inbound_link)]
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        for l in links {
            st.drop_link(l);
        }
        true
    });
    if found {
        ctx.r.ok();
    } else {
        ctx.r.error(&format!(
            "ERR Unknown node {}",
            String::from_utf8_lossy(a.get(4))
        ));
    }
}

pub fn debug(ctx: &mut Ctx, a: &Args) {
    if !debug_allowed(ctx) {
        return ctx.r.error("ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.");
    }
    let sub = a.get(1);
    if super::debug::run(ctx, a) {
        return;
    }
    if eq_ic(sub, "DROP-CLUSTER-PACKET-FILTER") && a.len() == 3 {
        let Some(t) = crate::resp::parse_i64(a.get(2)).filter(|t| i32::try_from(*t).is_ok()) else {
            return ctx.r.error(super::NOT_INT);
        };
        if let Some(cl) = ctx.srv.cluster.get() {
            cl.with(ctx.srv, |st| st.drop_filter = t as i32);
        }
        ctx.r.ok();
    } else if eq_ic(sub, "CLOSE-CLUSTER-LINK-ON-PACKET-DROP") && a.len() == 3 {
        let on = match a.get(2) {
            v if v.eq_ignore_ascii_case(b"yes") => true,
            v if v.eq_ignore_ascii_case(b"no") => false,
            _ => return ctx.r.error("ERR syntax error"),
        };
        if let Some(cl) = ctx.srv.cluster.get() {
            cl.with(ctx.srv, |st| st.close_on_drop = on);
        }
        ctx.r.ok();
    } else if eq_ic(sub, "CLUSTERLINK") && a.len() == 5 && eq_ic(a.get(2), "KILL") {
        debug_clusterlink_kill(ctx, a);
    } else if eq_ic(sub, "SEGFAULT") {
        // Simulates a crash, as the cluster tutorial does: redis-server
        // writes through a bad pointer, so its report names SIGSEGV.
        // SAFETY: raising a signal; its handler or default action ends
        // the process.
        unsafe {
            libc::raise(libc::SIGSEGV);
        }
        std::process::abort();
    } else if eq_ic(sub, "SLEEP") && a.len() == 3 {
        // Like Redis, the sleep holds the command (and its thread), so it
        // shows in SLOWLOG and command stats.
        let secs = super::parse_float(a.get(2))
            .unwrap_or(0.0)
            .clamp(0.0, 3600.0);
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        ctx.r.ok();
    } else if eq_ic(sub, "POPULATE") && (3..=5).contains(&a.len()) {
        debug_populate(ctx, a);
    } else if eq_ic(sub, "RELOAD") {
        debug_reload(ctx, a);
    } else if eq_ic(sub, "SET-DISABLE-DENY-SCRIPTS") && a.len() == 3 {
        let on = a.get(2) != b"0";
        ctx.srv.scripts.set_deny_disabled(on);
        ctx.r.ok();
    } else if eq_ic(sub, "CONFIG-REWRITE-FORCE-ALL") && a.len() == 2 {
        match rewrite_config_file(ctx, true) {
            Ok(()) => ctx.r.ok(),
            Err(e) => ctx
                .r
                .error(&format!("ERR CONFIG-REWRITE-FORCE-ALL failed: {e}")),
        }
    } else if eq_ic(sub, "SET-ACTIVE-EXPIRE") && a.len() == 3 {
        let on = a.get(2) != b"0";
        ctx.srv.hot.active_expire.store(on, Ordering::Relaxed);
        ctx.r.ok();
    } else if eq_ic(sub, "HELP") {
        help_reply(
            ctx,
            "DEBUG",
            &[
                "POPULATE <count> [<prefix>] [<size>]",
                "    Create <count> string keys named <prefix>:<n> (prefix \"key\").",
                "RELOAD",
                "    Write the dataset out and load it back.",
                "SET-DISABLE-DENY-SCRIPTS <0|1>",
                "    Let scripts run commands they are normally refused (1), or not (0).",
                "CONFIG-REWRITE-FORCE-ALL",
                "    Rewrite the configuration file with every directive, defaults included.",
                "SET-ACTIVE-EXPIRE <0|1>",
                "    Turn the background deletion of expired keys off or on.",
                "SEGFAULT",
                "    Crash the server at once.",
                "SET-SKIP-CHECKSUM-VALIDATION <0|1>",
                "    Take RESTORE payloads and RDB files whatever their checksum (1), or not (0).",
                "SLEEP <seconds>",
                "    Stop answering this connection for <seconds>.",
            ],
        );
    } else {
        ctx.r.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(sub)
        ));
    }
}

/// DEBUG RELOAD: saves `dbfilename` (not with NOSAVE), empties the
/// server (not with NOFLUSH) and loads the file back, as redis-server
/// does. A library met again is an error unless MERGE lets it replace.
/// Redis blocks every client meanwhile; with more than one worker thread
/// the others are held by a pause.
fn debug_reload(ctx: &mut Ctx, a: &Args) {
    let (mut merge, mut flush, mut save) = (false, true, true);
    for i in 2..a.len() {
        let o = a.get(i);
        if eq_ic(o, "MERGE") {
            merge = true;
        } else if eq_ic(o, "NOFLUSH") {
            flush = false;
        } else if eq_ic(o, "NOSAVE") {
            save = false;
        } else {
            return ctx
                .r
                .error("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.");
        }
    }
    let srv = ctx.srv;
    use crate::server::pause;
    let hold = srv.config.read().worker_threads() > 1 && srv.pause.kind() == pause::OFF;
    if hold {
        srv.pause.start(srv, pause::ALL, i64::MAX);
    }
    let held = ctx.locks.release_held();
    let saved = if save {
        crate::persistence::save(srv)
            .map_err(|e| tracing::warn!("DEBUG RELOAD could not save: {e}"))
    } else {
        Ok(())
    };
    let r = saved.map(|()| crate::persistence::reload_rdb(srv, flush, merge));
    ctx.locks.relock(held);
    if hold {
        srv.pause.stop(srv);
    }
    let Ok(r) = r else {
        return ctx.r.error("ERR");
    };
    match r {
        Ok(()) => {
            tracing::warn!("DB reloaded by DEBUG RELOAD");
            ctx.r.ok();
        }
        Err(e) => {
            tracing::warn!("DEBUG RELOAD: {e}");
            ctx.r.error("ERR Error trying to load the RDB dump");
        }
    }
}

fn debug_populate(ctx: &mut Ctx, a: &Args) {
    let count = match crate::resp::parse_i64(a.get(2)) {
        Some(n) if n >= 0 => n,
        _ => return ctx.r.error("ERR value is out of range, must be positive"),
    };
    let prefix = if a.len() >= 4 { a.get(3) } else { b"key" };
    let size = if a.len() == 5 {
        match crate::resp::parse_i64(a.get(4)) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return ctx.r.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let mut key = Vec::with_capacity(prefix.len() + 12);
    let mut val = Vec::new();
    let mut b = itoa::Buffer::new();
    for i in 0..count {
        key.clear();
        key.extend_from_slice(prefix);
        key.push(b':');
        key.extend_from_slice(b.format(i).as_bytes());
        let mut s = ctx.locks.key(&key);
        if s.exists(&key) {
            continue;
        }
        val.clear();
        val.extend_from_slice(b"value:");
        val.extend_from_slice(b.format(i).as_bytes());
        if let Some(sz) = size {
            val.resize(sz, 0);
        }
        // Not propagated, as in Redis: replicas and the AOF never see
        // these keys (a test fills a master and its replica apart).
        s.set(&key, Value::string(&val), false);
    }
    ctx.r.ok();
}

/// MONITOR: the connection keeps running commands; the lines arrive on
/// its message queue like pub/sub messages.
pub fn monitor(ctx: &mut Ctx, _a: &Args) {
    if ctx.client.in_exec {
        // Inside EXEC a client must get one reply per command.
        return ctx
            .r
            .error("ERR MONITOR isn't allowed for DENY BLOCKING client");
    }
    if ctx.client.monitor {
        // Redis ignores a repeated MONITOR without a reply.
        return;
    }
    ctx.client.monitor = true;
    ctx.client.info.is_monitor.store(true, Ordering::Relaxed);
    let tx = super::pubsub::subs(ctx).tx.clone();
    ctx.srv.add_monitor(ctx.client.id, tx);
    ctx.r.ok();
}

/// Ends MONITOR mode (RESET, disconnect).
pub fn stop_monitor(ctx: &mut Ctx) {
    if std::mem::take(&mut ctx.client.monitor) {
        ctx.srv.remove_monitor(ctx.client.id);
        ctx.client.info.is_monitor.store(false, Ordering::Relaxed);
    }
}

pub fn save(ctx: &mut Ctx, _a: &Args) {
    if ctx.srv.bgsave_running.load(Ordering::Relaxed) {
        return ctx.r.error("ERR Background save already in progress");
    }
    match crate::persistence::save(ctx.srv) {
        Ok(()) => ctx.r.ok(),
        Err(e) => {
            tracing::warn!("SAVE failed: {e}");
            ctx.r.error("ERR")
        }
    }
}

pub fn bgsave(ctx: &mut Ctx, a: &Args) {
    if a.len() > 2 || (a.len() == 2 && !eq_ic(a.get(1), "SCHEDULE")) {
        return ctx.r.error(SYNTAX);
    }
    use crate::persistence::schedule::{request_bgsave, Started};
    match request_bgsave(ctx.srv, a.len() == 2, ctx.client.in_exec) {
        Ok(Started::Now) => ctx.r.simple("Background saving started"),
        Ok(Started::Scheduled) => ctx.r.simple("Background saving scheduled"),
        Err(e) => ctx.r.error(&format!("ERR {e}")),
    }
}

pub fn bgrewriteaof(ctx: &mut Ctx, _a: &Args) {
    use crate::persistence::schedule::{request_rewrite, Started};
    match request_rewrite(ctx.srv, ctx.client.in_exec) {
        Ok(Started::Now) => ctx
            .r
            .simple("Background append only file rewriting started"),
        Ok(Started::Scheduled) => ctx
            .r
            .simple("Background append only file rewriting scheduled"),
        Err(e) => ctx.r.error(&format!("ERR {e}")),
    }
}

pub fn shutdown(ctx: &mut Ctx, a: &Args) {
    let (mut nosave, mut save, mut now, mut force, mut abort) = (false, false, false, false, false);
    for x in a.iter().skip(1) {
        if eq_ic(x, "NOSAVE") {
            nosave = true;
        } else if eq_ic(x, "SAVE") {
            save = true;
        } else if eq_ic(x, "NOW") {
            now = true;
        } else if eq_ic(x, "FORCE") {
            force = true;
        } else if eq_ic(x, "ABORT") {
            abort = true;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    // ABORT stands alone; SAVE and NOSAVE exclude each other.
    if (abort && (nosave || save || now || force)) || (nosave && save) {
        return ctx.r.error(SYNTAX);
    }
    if abort {
        return if crate::server::shutdown::abort() {
            ctx.r.ok()
        } else {
            ctx.r.error("ERR No shutdown in progress.")
        };
    }
    let save = if nosave {
        Some(false)
    } else if save {
        Some(true)
    } else {
        None
    };
    ctx.actions
        .push(Action::Shutdown(crate::server::shutdown::Flags {
            save,
            force,
            now,
        }));
}
