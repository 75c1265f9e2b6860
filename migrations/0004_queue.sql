-- The paper queue: one row per paper, moving through
-- pending → prepping → prepped → analyzing → analyzed → wrapping → done
-- (failed from every working status). A working status is held under a
-- fenced claim (owner_id, lease_until, fencing_token); the reaper returns
-- rows whose claim expired to their last stable status.
CREATE TABLE executions (
    id                 TEXT PRIMARY KEY,       -- "paper:<safe arxiv id>"
    arxiv_id           TEXT NOT NULL UNIQUE,
    title              TEXT,
    abstract           TEXT,
    pdf_path           TEXT,
    source             TEXT NOT NULL DEFAULT 'cli',
    status             TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'prepping', 'prepped', 'analyzing', 'analyzed', 'wrapping', 'done', 'failed')),
    priority           INTEGER NOT NULL DEFAULT 0,  -- higher first
    attempts_prep      INTEGER NOT NULL DEFAULT 0,
    attempts_expensive INTEGER NOT NULL DEFAULT 0,
    attempts_wrap      INTEGER NOT NULL DEFAULT 0,
    not_before         INTEGER NOT NULL DEFAULT 0,  -- unix ms; not claimable before
    phase_execution    TEXT,     -- machine execution id of the phase being worked on (kept across reaps)
    prep_result        TEXT,     -- JSON; values >= 4 KiB as blob references
    expensive_result   TEXT,
    wrap_result        TEXT,
    report_path        TEXT,
    last_error_kind    TEXT,
    last_error_message TEXT,
    owner_id           TEXT,
    lease_until        INTEGER,  -- unix ms
    fencing_token      INTEGER NOT NULL DEFAULT 0,
    cancel_requested   INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    phase_started_at   TEXT,
    done_at            TEXT
);
CREATE INDEX executions_claim ON executions(status, not_before, priority);

-- Blobs referenced from executions' phase results (so prune keeps them).
CREATE TABLE execution_blob_refs (
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    hash         TEXT NOT NULL REFERENCES blobs(hash),
    PRIMARY KEY (execution_id, hash)
) WITHOUT ROWID;

-- The timeline of a paper: every claim, phase end, rollback, retry, cancel.
-- Survives checkpoint pruning.
CREATE TABLE execution_events (
    id            INTEGER PRIMARY KEY,
    execution_id  TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    phase         TEXT,
    kind          TEXT NOT NULL,  -- claimed, finished, failed, retry_later, reaped, retried, cancelled, added
    from_status   TEXT,
    to_status     TEXT,
    attempt       INTEGER,
    machine_execution TEXT,
    owner_id      TEXT,
    error_kind    TEXT,
    message       TEXT,
    duration_ms   INTEGER
);
CREATE INDEX execution_events_execution ON execution_events(execution_id, id);
CREATE INDEX execution_events_time ON execution_events(at, kind);
