-- wait_for (issue 14 item 5): signals sent to an execution, and the waits
-- of executions parked on a `wait_for` state.
--
-- A signal is taken by the waiting state *for a step* (taken_step): the
-- same state re-run at the same step after a crash gets the same signal
-- again instead of losing it. Pending signals have taken_step NULL.
CREATE TABLE signals (
    id           INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    data         TEXT NOT NULL,      -- JSON
    sent_at      TEXT NOT NULL,
    taken_step   INTEGER
);
CREATE INDEX signals_target ON signals(execution_id, name, id);

-- One row per execution parked on a wait_for state: what it waits for,
-- since when and until when (unix ms; NULL = no timeout).
CREATE TABLE signal_waits (
    execution_id TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    step         INTEGER NOT NULL,
    since_ms     INTEGER NOT NULL,
    deadline_ms  INTEGER
);
