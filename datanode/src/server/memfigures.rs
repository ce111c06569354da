//! Where the memory goes: one account that INFO's memory section and
//! MEMORY STATS both print (Redis builds both from getMemoryOverheadData),
//! so the two always agree.

use std::sync::atomic::Ordering;

use super::shared::Shared;

/// A database's share of the overhead (MEMORY STATS `db.N`).
pub struct DbOverhead {
    pub index: usize,
    pub keys: u64,
    /// Its tables: the slots and what each key costs them.
    pub main: u64,
    /// Its expiry tables.
    pub expires: u64,
}

/// Memory that is not the dataset, by owner, and the totals around it.
pub struct Overhead {
    /// What the server has allocated (INFO used_memory).
    pub used: u64,
    pub startup: u64,
    pub peak: u64,
    /// The replication buffer replicas and the backlog share.
    pub repl_buffers: u64,
    pub backlog: u64,
    /// What replicas hold past the backlog, and their send buffers.
    pub clients_slaves: u64,
    /// Every other connection, as maxmemory-clients counts it.
    pub clients_normal: u64,
    /// Bytes queued on the cluster bus's links.
    pub cluster_links: u64,
    pub aof_buffer: u64,
    /// The EVAL script cache.
    pub lua_caches: u64,
    pub functions_caches: u64,
    /// Databases holding keys.
    pub dbs: Vec<DbOverhead>,
    pub total: u64,
}

impl Overhead {
    pub fn keys(&self) -> u64 {
        self.dbs.iter().map(|d| d.keys).sum()
    }

    pub fn dataset(&self) -> u64 {
        self.used.saturating_sub(self.total)
    }

    /// Used memory past what the server took to start.
    fn net(&self) -> u64 {
        self.used.saturating_sub(self.startup).max(1)
    }

    pub fn dataset_perc(&self) -> f64 {
        self.dataset() as f64 * 100.0 / self.net() as f64
    }

    pub fn bytes_per_key(&self) -> u64 {
        self.net().checked_div(self.keys()).unwrap_or(0)
    }

    pub fn peak_perc(&self) -> f64 {
        if self.peak > 0 {
            self.used as f64 * 100.0 / self.peak as f64
        } else {
            0.0
        }
    }
}

/// The account as of now.
pub fn gather(srv: &Shared) -> Overhead {
    // The allocator's own count when the binary installed it (the figure
    // maxmemory is checked against), jemalloc's otherwise.
    let used = if crate::memory::counting() {
        crate::memory::used()
    } else {
        crate::command::server::allocated_bytes()
    };
    crate::memory::peak_update(used);
    let peak = crate::memory::peak().max(used);
    let startup = srv.startup_memory.load(Ordering::Relaxed).min(used);
    let (repl_buffers, backlog_size, aof_buffer) = srv.log.with_buf(|b| {
        (
            b.repl.mem(),
            b.repl.size(),
            (b.buf.capacity() + b.old.capacity()) as u64,
        )
    });
    // As Redis 7.0: replicas and the backlog share one buffer; while
    // replicas are connected, what passes the backlog's size is theirs.
    let has_replicas = !srv.repl.state.lock().replicas.is_empty();
    let (backlog, clients_slaves) = if has_replicas && repl_buffers > backlog_size {
        (backlog_size, repl_buffers - backlog_size)
    } else {
        (repl_buffers, 0)
    };
    // Their send buffers too (a copy Redis does not make).
    let clients_slaves = clients_slaves + crate::replication::master::send_buffers();
    let clients_normal: u64 = srv
        .clients
        .lock()
        .values()
        .filter(|c| c.role.load(Ordering::Relaxed) != super::client::role::REPLICA)
        .map(|c| c.memory())
        .sum();
    let cluster_links = srv.cluster.get().map_or(0, |c| c.links_summary().1);
    let lua_caches = srv.scripts.cache.bytes();
    let functions_caches = srv.scripts.functions.bytes() as u64;
    // Every made database's tables count, but only those holding keys are
    // listed (as Redis lists them); an emptied one still has its slots.
    let mut tables = 0;
    let mut dbs: Vec<DbOverhead> = Vec::new();
    for d in srv.ks.existing() {
        let (main, expires) = d.table_overhead();
        let (main, expires) = (main as u64, expires as u64);
        tables += main + expires;
        let keys = d.size() as u64;
        if keys > 0 {
            dbs.push(DbOverhead {
                index: d.index,
                keys,
                main,
                expires,
            });
        }
    }
    let total = startup
        + backlog
        + clients_slaves
        + clients_normal
        + cluster_links
        + aof_buffer
        + lua_caches
        + functions_caches
        + tables;
    Overhead {
        used,
        startup,
        peak,
        repl_buffers,
        backlog,
        clients_slaves,
        clients_normal,
        cluster_links,
        aof_buffer,
        lua_caches,
        functions_caches,
        dbs,
        total,
    }
}
