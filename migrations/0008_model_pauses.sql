-- A provider's requested pause per model (a 429's Retry-After, or a reset
-- time with no requests remaining), persisted so `runner status` run as its
-- own process and a second daemon on the same database know about it: the
-- first daemon's rate limiter only holds it in memory. Written by
-- src/runner/breaker.rs through src/store/pauses.rs; a row whose
-- paused_until has passed means nothing.
CREATE TABLE model_pauses (
    model         TEXT PRIMARY KEY,    -- the limiter key: base_url|model
    provider      TEXT NOT NULL,
    paused_until  INTEGER NOT NULL,    -- unix ms; only ever moved later
    reason        TEXT NOT NULL,       -- rate_limited
    updated_at    TEXT NOT NULL
);
