-- Blobs referenced from machine_executions.input / .output (large values,
-- e.g. paper text handed from one phase to the next, are stored once and
-- referenced, like checkpoint values). Kept while the execution row exists.
CREATE TABLE machine_value_refs (
    execution_id TEXT NOT NULL,
    hash         TEXT NOT NULL REFERENCES blobs(hash),
    PRIMARY KEY (execution_id, hash)
) WITHOUT ROWID;
CREATE INDEX machine_value_refs_hash ON machine_value_refs(hash);
