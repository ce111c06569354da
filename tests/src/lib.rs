//! Test harness: start real `datanode` and `redis-server` processes on
//! free loopback ports, talk raw RESP to them, compare their replies.

pub mod cluster;
pub mod diff;
pub mod preload;
pub mod process;
pub mod resp;
pub mod rng;

pub use cluster::wait_until;
pub use process::{
    controlplane_bin, datanode_bin, free_port, free_ports, keep_logs_if_failing,
    start_expect_failure, Node, Server, NO_DISK_DEBUG,
};
pub use resp::{encode, split_line, Conn, Reply};
pub use rng::Rng;
