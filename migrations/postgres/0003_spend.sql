-- Budgets in money and tokens (SQLite migration 0010_spend.sql): the
-- worst case of reserved ledger rows and the holds of claimed phases.
ALTER TABLE llm_calls ADD COLUMN worst_tokens BIGINT;
ALTER TABLE llm_calls ADD COLUMN worst_cost DOUBLE PRECISION;

CREATE TABLE budget_holds (
    paper_id       TEXT NOT NULL,
    fencing_token  BIGINT NOT NULL,
    class          TEXT NOT NULL CHECK (class IN ('cheap', 'expensive')),
    working_status TEXT NOT NULL,
    phase          TEXT NOT NULL,
    owner_id       TEXT NOT NULL,
    requests       BIGINT NOT NULL,
    tokens         BIGINT NOT NULL,
    cost           DOUBLE PRECISION,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (paper_id, fencing_token, class)
);
