-- Per-node metric samples, one per node per second, kept for an hour (the
-- dashboard's charts). The key makes a second observer sharing the
-- database add nothing for a second already sampled.
CREATE TABLE samples (
    cluster TEXT NOT NULL,
    node_id TEXT NOT NULL,
    sec BIGINT NOT NULL,
    address TEXT NOT NULL,
    role TEXT NOT NULL,
    ops_per_sec BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    key_count BIGINT NOT NULL,
    repl_offset BIGINT NOT NULL,
    PRIMARY KEY (cluster, node_id, sec)
);
CREATE INDEX samples_by_time ON samples (cluster, sec);
