-- slotkv control plane: desired topology, jobs, events, tokens.
-- Portable between SQLite and PostgreSQL: ids are text or come from the
-- counters table, times are Unix milliseconds, JSON is stored as text.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('events', 0);

CREATE TABLE clusters (
    name        TEXT PRIMARY KEY,
    replicas    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- The last observed topology (JSON), the baseline for the next diff
    -- after a restart.
    observed    TEXT
);

-- Desired membership: one row per node address of a cluster.
CREATE TABLE nodes (
    cluster      TEXT NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    node_id      TEXT,
    role         TEXT NOT NULL,
    master_addr  TEXT,
    observed     TEXT,
    PRIMARY KEY (cluster, address)
);

-- Desired slot ownership, as ranges per master address.
CREATE TABLE slot_ranges (
    cluster  TEXT NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    address  TEXT NOT NULL,
    first    BIGINT NOT NULL,
    last     BIGINT NOT NULL,
    PRIMARY KEY (cluster, first)
);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    cluster         TEXT NOT NULL,
    params          TEXT NOT NULL,
    plan            TEXT NOT NULL,
    status          TEXT NOT NULL,
    progress        BIGINT NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    idempotency_key TEXT,
    actor           TEXT NOT NULL,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key);
CREATE INDEX jobs_cluster_status ON jobs (cluster, status);
-- One unfinished job per cluster, even with several control planes.
CREATE UNIQUE INDEX jobs_one_active ON jobs (cluster) WHERE status IN ('pending', 'running');

CREATE TABLE job_steps (
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx          BIGINT NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    detail       TEXT,
    started_at   BIGINT,
    finished_at  BIGINT,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE events (
    id       BIGINT PRIMARY KEY,
    time     BIGINT NOT NULL,
    cluster  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    node     TEXT,
    job      TEXT,
    actor    TEXT,
    details  TEXT NOT NULL
);
CREATE INDEX events_cluster ON events (cluster, id);

CREATE TABLE tokens (
    name        TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
