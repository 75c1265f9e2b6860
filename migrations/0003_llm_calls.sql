-- The spend ledger: one row per LLM request attempt, reserved before it is
-- sent and settled after. Daily budgets are computed from these rows.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY,
    execution_id      TEXT NOT NULL,
    machine           TEXT NOT NULL,
    state             TEXT NOT NULL,
    step              INTEGER NOT NULL,
    sample            INTEGER NOT NULL DEFAULT 0,
    attempt           INTEGER NOT NULL,
    agent             TEXT NOT NULL,
    profile           TEXT,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    fallback_from     TEXT,             -- profile this call stood in for
    status            TEXT NOT NULL DEFAULT 'reserved' CHECK (status IN ('reserved', 'ok', 'error', 'reused')),
    http_status       INTEGER,
    error_kind        TEXT,
    error_message     TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    total_tokens      INTEGER,
    cost              REAL,
    latency_ms        INTEGER,
    retry_after       REAL,
    response          TEXT,             -- the parsed result of a successful call (JSON)
    reserved_at       TEXT NOT NULL,
    settled_at        TEXT
);
CREATE INDEX llm_calls_reuse ON llm_calls(execution_id, state, step, request_hash, status);
CREATE INDEX llm_calls_time ON llm_calls(reserved_at);
