//! slotkv data node: a Redis-Cluster-compatible server.
//!
//! The data path, top to bottom: [`server`] accepts connections and reads
//! bytes, [`resp`] parses them into commands without copying, [`command`]
//! looks each one up in the command table and runs it against the
//! [`keyspace`], whose writes are recorded in the [`persistence`] effect log.

pub mod acl;
pub mod affinity;
pub mod cluster;
pub mod command;
pub mod config;
pub mod crashlog;
pub mod geohash;
pub mod glob;
pub mod hugepages;
pub mod keyspace;
pub mod loglevel;
pub mod memory;
pub mod net;
pub mod persistence;
pub mod pqsort;
pub mod proctitle;
pub mod replication;
pub mod resp;
pub mod scripting;
pub mod server;
pub mod slotmig;
pub mod strtod;
pub mod util;
pub mod watchdog;
