
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    project TEXT NOT NULL DEFAULT 'default',
    owner TEXT,
    lease_until BIGINT,
    requested TEXT
);
CREATE INDEX executions_by_status ON executions (status, created_at);
CREATE INDEX executions_by_creation ON executions (created_at DESC, id DESC);
CREATE INDEX executions_unfinished ON executions (created_at, id)
    WHERE status NOT IN ('completed', 'faulted', 'cancelled');
CREATE INDEX executions_by_owner ON executions (owner) WHERE owner IS NOT NULL;
CREATE TABLE steps (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT,
    context TEXT,
    deadline BIGINT,
    PRIMARY KEY (execution_id, key)
);
CREATE TABLE events (
    execution_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time BIGINT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE UNIQUE INDEX events_by_pos ON events (pos);
CREATE TABLE inbox (
    execution_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE log_head (
    one INT PRIMARY KEY CHECK (one = 1),
    pos BIGINT NOT NULL
);
INSERT INTO log_head VALUES (1, 0);
CREATE TABLE writers (
    node TEXT PRIMARY KEY,
    last_group BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
