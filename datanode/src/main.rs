//! `datanode [config-file] [--directive value ...]`, like redis-server.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: datanode::memory::CountingJemalloc = datanode::memory::CountingJemalloc;

/// Detaches from the terminal the way redis-server does with
/// `daemonize yes`: fork, let the parent exit, start a new session.
fn daemonize() {
    // SAFETY: called before any thread is started (the runtime comes later).
    unsafe {
        match libc::fork() {
            -1 => {
                eprintln!("fork failed");
                std::process::exit(1);
            }
            0 => {
                libc::setsid();
            }
            _ => std::process::exit(0),
        }
    }
}

/// The log: standard output or `logfile`, at `loglevel` (RUST_LOG, when
/// set, chooses the filter instead, and CONFIG SET loglevel leaves it).
fn init_logging(logfile: &str, loglevel: &str) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{reload, EnvFilter};
    let writer = if logfile.is_empty() {
        BoxMakeWriter::new(std::io::stdout)
    } else {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logfile)
        {
            Ok(f) => BoxMakeWriter::new(std::sync::Mutex::new(f)),
            Err(e) => {
                eprintln!("Can't open the log file: {logfile}: {e}");
                std::process::exit(1);
            }
        }
    };
    macro_rules! fmt_layer {
        () => {
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(writer)
        };
    }
    match EnvFilter::try_from_default_env() {
        Ok(filter) => tracing_subscriber::registry()
            .with(filter)
            .with(fmt_layer!())
            .init(),
        Err(_) => {
            let level = datanode::loglevel::filter_for(loglevel);
            let (filter, handle) = reload::Layer::new(EnvFilter::new(level));
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt_layer!())
                .init();
            datanode::loglevel::install(move |l| {
                let _ = handle.reload(EnvFilter::new(l));
            });
        }
    }
}

fn main() {
    #[cfg(not(target_env = "msvc"))]
    datanode::memory::CountingJemalloc::mark_installed();
    // Calibrates the TSC clock commands are timed with, off the startup
    // path (the first command waits for it if it is not done).
    std::thread::spawn(quanta::Instant::now);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!(
            "slotkv datanode v={} (Redis {} compatible)",
            env!("CARGO_PKG_VERSION"),
            datanode::command::connection::REDIS_VERSION
        );
        return;
    }
    let cfg = match datanode::config::Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    // Before the server's threads start: it moves the environment.
    if cfg.flag("set-proc-title") {
        datanode::proctitle::init();
    }
    let logfile = cfg.logfile();
    init_logging(&logfile, &cfg.loglevel());
    datanode::crashlog::init(&logfile);
    if cfg.daemonize() {
        daemonize();
    }
    datanode::hugepages::check(cfg.flag("disable-thp"));
    // One worker: a current-thread runtime runs woken connections in the
    // order their input arrived, as Redis's event loop does. The
    // multi-thread scheduler's LIFO slot runs the last-woken connection
    // first, which reorders commands two clients sent one after the other.
    let workers = cfg.worker_threads();
    // server_cpulist pins the threads that serve clients (this one
    // included); the other lists, the threads that start later.
    datanode::affinity::init(&cfg);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.on_thread_start(|| datanode::affinity::pin(datanode::affinity::Role::Server));
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    datanode::affinity::pin(datanode::affinity::Role::Server);
    let logs_to_file = !logfile.is_empty();
    if let Err(e) = rt.block_on(datanode::server::run(cfg)) {
        // Into the log, where redis-server puts why it could not start
        // (a bad AOF or RDB file, a port in use); on the terminal too
        // when the log is a file.
        tracing::error!("{e:#}");
        if logs_to_file {
            eprintln!("# {e:#}");
        }
        std::process::exit(1);
    }
    // Connections may still be parked; exit without waiting for them.
    std::process::exit(0);
}
