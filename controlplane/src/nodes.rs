//! Talking to data nodes (datanode or redis-server) through their public
//! protocol, with the `redis` crate: the same commands `redis-cli
//! --cluster` sends.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::topology::{parse_nodes, NodeLine};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{addr}: cannot connect: {why}")]
    Connect { addr: String, why: String },
    #[error("{addr}: {cmd} failed: {why}")]
    Command {
        addr: String,
        cmd: String,
        why: String,
    },
    #[error("{addr}: {why}")]
    Reply { addr: String, why: String },
}

pub type Result<T> = std::result::Result<T, NodeError>;

/// One connection to one node.
pub struct Node {
    pub addr: String,
    conn: MultiplexedConnection,
}

/// `host:port` split for CLUSTER MEET.
pub fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (h, p) = addr.rsplit_once(':')?;
    Some((h, p.parse().ok()?))
}

impl Node {
    pub async fn connect(addr: &str, password: Option<&str>) -> Result<Node> {
        let err = |why: String| NodeError::Connect {
            addr: addr.to_string(),
            why,
        };
        let (host, port) = split_addr(addr).ok_or_else(|| err("not host:port".into()))?;
        // A URL keeps us off the crate's connection-info internals; the
        // password is percent-encoded whole.
        let auth = password
            .map(|p| {
                let enc: String = p.bytes().map(|b| format!("%{b:02X}")).collect();
                format!(":{enc}@")
            })
            .unwrap_or_default();
        let info = format!("redis://{auth}{host}:{port}/");
        let client = redis::Client::open(info.as_str()).map_err(|e| err(e.to_string()))?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| err(e.to_string()))?;
        Ok(Node {
            addr: addr.to_string(),
            conn,
        })
    }

    /// Sends a command; a server error becomes `NodeError::Command`.
    pub async fn cmd<T: redis::FromRedisValue>(&mut self, args: &[&str]) -> Result<T> {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query_async(&mut self.conn)
            .await
            .map_err(|e| NodeError::Command {
                addr: self.addr.clone(),
                cmd: args[..args.len().min(2)].join(" "),
                why: e.to_string(),
            })
    }

    pub async fn cluster_nodes(&mut self) -> Result<Vec<NodeLine>> {
        let text: String = self.cmd(&["CLUSTER", "NODES"]).await?;
        let mut lines = parse_nodes(&text).map_err(|e| NodeError::Reply {
            addr: self.addr.clone(),
            why: e.to_string(),
        })?;
        // A node that has met no one does not know its own IP yet
        // (":port"): it is the address we reached it at.
        for l in lines
            .iter_mut()
            .filter(|l| l.is_myself() && l.address.starts_with(':'))
        {
            l.address = self.addr.clone();
        }
        Ok(lines)
    }

    pub async fn myself(&mut self) -> Result<NodeLine> {
        let addr = self.addr.clone();
        self.cluster_nodes()
            .await?
            .into_iter()
            .find(|n| n.is_myself())
            .ok_or(NodeError::Reply {
                addr,
                why: "CLUSTER NODES has no myself line".into(),
            })
    }

    /// This node's `health` in its own `CLUSTER SHARDS` reply: "online",
    /// "fail", or "loading" (a replica that has not synced yet, which
    /// CLUSTER NODES does not tell).
    pub async fn own_health(&mut self, id: &str) -> Result<Option<String>> {
        let v: redis::Value = self.cmd(&["CLUSTER", "SHARDS"]).await?;
        Ok(health_in_shards(&v, id))
    }

    /// `INFO [section]` (or `CLUSTER INFO` with `cluster = true`) as fields.
    pub async fn info(&mut self, section: &str) -> Result<HashMap<String, String>> {
        let text: String = if section == "cluster-info" {
            self.cmd(&["CLUSTER", "INFO"]).await?
        } else {
            self.cmd(&["INFO", section]).await?
        };
        Ok(parse_info(&text))
    }
}

/// The `health` of node `id` in a `CLUSTER SHARDS` reply (RESP2 flat
/// key/value arrays or RESP3 maps).
pub fn health_in_shards(v: &redis::Value, id: &str) -> Option<String> {
    use redis::Value;
    fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
        match v {
            Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
            Value::Array(a) => a.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
            _ => Vec::new(),
        }
    }
    fn text(v: &Value) -> Option<&str> {
        match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok(),
            Value::SimpleString(s) => Some(s),
            Value::VerbatimString { text, .. } => Some(text),
            _ => None,
        }
    }
    fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
        pairs(v)
            .into_iter()
            .find(|(k, _)| text(k) == Some(name))
            .map(|(_, v)| v)
    }
    let Value::Array(shards) = v else {
        return None;
    };
    shards
        .iter()
        .filter_map(|s| match field(s, "nodes")? {
            Value::Array(nodes) => Some(nodes),
            _ => None,
        })
        .flatten()
        .find(|n| field(n, "id").and_then(text) == Some(id))
        .and_then(|n| field(n, "health"))
        .and_then(text)
        .map(str::to_string)
}

/// `field:value` lines of INFO.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Keys in `db0:keys=N,expires=…`.
pub fn keys_of(info: &HashMap<String, String>) -> u64 {
    info.iter()
        .filter(|(k, _)| k.starts_with("db"))
        .filter_map(|(_, v)| {
            v.split(',')
                .next()?
                .strip_prefix("keys=")?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_keys() {
        let i = parse_info("# Keyspace\r\ndb0:keys=12,expires=0,avg_ttl=0\r\ndb3:keys=3,expires=1\r\nused_memory:100\r\n");
        assert_eq!(i["used_memory"], "100");
        assert_eq!(keys_of(&i), 15);
        assert_eq!(split_addr("127.0.0.1:7000"), Some(("127.0.0.1", 7000)));
        assert_eq!(split_addr("nope"), None);
    }

    #[test]
    fn health_from_cluster_shards_in_both_protocols() {
        use redis::Value;
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let node = |id: &str, health: &str| {
            Value::Array(vec![
                b("id"),
                b(id),
                b("port"),
                Value::Int(30001),
                b("health"),
                b(health),
            ])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![
            b("slots"),
            Value::Array(vec![Value::Int(0), Value::Int(16383)]),
            b("nodes"),
            Value::Array(vec![node("aa", "online"), node("bb", "loading")]),
        ])]);
        assert_eq!(health_in_shards(&resp2, "bb").as_deref(), Some("loading"));
        assert_eq!(health_in_shards(&resp2, "aa").as_deref(), Some("online"));
        assert_eq!(health_in_shards(&resp2, "cc"), None);
        let resp3 = Value::Array(vec![Value::Map(vec![(
            b("nodes"),
            Value::Array(vec![Value::Map(vec![
                (b("id"), b("aa")),
                (b("health"), b("fail")),
            ])]),
        )])]);
        assert_eq!(health_in_shards(&resp3, "aa").as_deref(), Some("fail"));
        assert_eq!(health_in_shards(&Value::Nil, "aa"), None);
    }
}
