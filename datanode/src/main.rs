//! `datanode [config-file] [--directive value ...]`, like redis-server.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(datanode::server::run(cfg)) {
        eprintln!("# {e:#}");
        std::process::exit(1);
    }
    // Connections may still be parked; exit without waiting for them.
    std::process::exit(0);
}
