-- Circuit breakers per model, persisted so a restart does not hammer a
-- provider that was refusing us. Filled in by src/runner/breaker.rs.
CREATE TABLE breakers (
    model       TEXT PRIMARY KEY,      -- the limiter key: provider/model
    provider    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    reason      TEXT,                  -- rate_limit, server_error, payment_required, ...
    open_until  INTEGER,               -- unix ms
    open_count  INTEGER NOT NULL DEFAULT 0,  -- consecutive openings (the open period doubles)
    updated_at  TEXT NOT NULL
);
