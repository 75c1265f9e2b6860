-- Fenced leases: who drives an execution tree, until when, and the token
-- every checkpoint write must still hold.
CREATE TABLE execution_leases (
    execution_id  TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    lease_until   INTEGER NOT NULL, -- unix epoch milliseconds
    fencing_token INTEGER NOT NULL,
    acquired_at   TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
