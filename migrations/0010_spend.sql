-- Budgets in money and tokens (issue #16): what a reserved ledger row may
-- cost at worst, and the worst case of every claimed phase still in flight.
--
-- worst_tokens / worst_cost: the request's worst case when it was reserved
-- (prompt tokens estimated from the serialized request + the output cap;
-- cost = those tokens × the profile's price, NULL when it has none). A row
-- still 'reserved' (in flight, or left by a crash) counts at this worst
-- case until it is settled; a settled row whose cost is unknown counts at
-- it too.
ALTER TABLE llm_calls ADD COLUMN worst_tokens INTEGER;
ALTER TABLE llm_calls ADD COLUMN worst_cost REAL;

-- The worst case a claimed phase may still spend, per budget class: taken
-- in the same transaction as the claim, drawn down as the phase reserves
-- ledger rows (each row then counts itself), and ignored once the claim it
-- belongs to has ended (the paper row no longer has this fencing token in
-- this working status: finished, failed, released, reaped). Every process
-- sharing the database counts every live hold, so two runners cannot both
-- admit the last dollar.
CREATE TABLE budget_holds (
    paper_id       TEXT NOT NULL,     -- executions.id
    fencing_token  INTEGER NOT NULL,  -- the claim's token
    class          TEXT NOT NULL CHECK (class IN ('cheap', 'expensive')),
    working_status TEXT NOT NULL,     -- the status the claim holds the row in
    phase          TEXT NOT NULL,
    owner_id       TEXT NOT NULL,
    requests       INTEGER NOT NULL,  -- worst-case requests not yet reserved
    tokens         INTEGER NOT NULL,  -- worst-case tokens not yet reserved
    cost           REAL,              -- worst-case cost not yet reserved; NULL: unpriced
    created_at     TEXT NOT NULL,
    PRIMARY KEY (paper_id, fencing_token, class)
);
