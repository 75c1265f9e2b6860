-- Durable machine executions: configs, content-addressed blobs, checkpoints.

-- Resolved machine bundles (machines + agents + prompts + profiles), by hash.
CREATE TABLE configs (
    hash         TEXT PRIMARY KEY,
    machine_name TEXT NOT NULL,
    source_path  TEXT,
    body         BLOB NOT NULL,
    created_at   TEXT NOT NULL
);

-- Large values (>= 4 KiB, e.g. paper text), stored once, referenced by hash.
CREATE TABLE blobs (
    hash       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    data       BLOB NOT NULL
);

-- One row per machine execution (children included); `latest_checkpoint`
-- is the latest pointer, written in the same transaction as the snapshot.
CREATE TABLE machine_executions (
    execution_id      TEXT PRIMARY KEY,
    root_id           TEXT NOT NULL,
    parent_id         TEXT,
    machine_name      TEXT NOT NULL,
    machine_index     INTEGER NOT NULL,
    config_hash       TEXT NOT NULL, -- configs(hash); not a FK so prune can drop configs of finished work
    input             TEXT, -- the root's input, to restart if it died before its first checkpoint
    status            TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    latest_checkpoint INTEGER,
    output            TEXT,
    error_kind        TEXT,
    error_message     TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX machine_executions_root ON machine_executions(root_id);
CREATE INDEX machine_executions_status ON machine_executions(status, updated_at);

CREATE TABLE checkpoints (
    id           INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES machine_executions(execution_id) ON DELETE CASCADE,
    step         INTEGER NOT NULL,
    event        TEXT NOT NULL,
    state        TEXT,
    next_state   TEXT,
    -- A delta checkpoint stores only the context keys that changed since
    -- the full checkpoint `base_id` of the same execution.
    base_id      INTEGER,
    body         BLOB NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX checkpoints_execution ON checkpoints(execution_id, id);

-- Which blobs a checkpoint references (so prune can find unreferenced ones).
CREATE TABLE blob_refs (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    hash          TEXT NOT NULL REFERENCES blobs(hash),
    PRIMARY KEY (checkpoint_id, hash)
) WITHOUT ROWID;
CREATE INDEX blob_refs_hash ON blob_refs(hash);
