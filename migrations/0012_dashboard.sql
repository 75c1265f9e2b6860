-- The dashboard's lists and charts (src/ops/dash/, src/store/dash.rs).
-- Queue pages are keyset-paginated on (updated_at, id), newest first, with
-- or without a status, or by error kind among failed papers: each filter
-- walks one index in order and stops after a page, whatever the queue size.
CREATE INDEX executions_recent ON executions(updated_at, id);
CREATE INDEX executions_status_recent ON executions(status, updated_at, id);
CREATE INDEX executions_failed_kind ON executions(last_error_kind, updated_at, id)
    WHERE status = 'failed';
-- The 24-hour charts and today's spend (status, budget admission) read
-- the ledger by time; every column they use is in the index itself, so a
-- day of calls is read without a table lookup per row. It covers every use
-- of the old time index, which it replaces.
-- Papers finished per period (the done chart, `done_last_hour/day`, the
-- forecast's samples) read straight from one index range.
CREATE INDEX execution_events_finished ON execution_events(kind, phase, at);
CREATE INDEX llm_calls_dash ON llm_calls(reserved_at, model, status, http_status, latency_ms,
    profile, cost_source, total_tokens, cost, worst_tokens, worst_cost);
DROP INDEX llm_calls_time;
-- Title search: an external-content FTS5 index over executions.title, kept
-- by triggers. It is keyed by the implicit rowid, which VACUUM may
-- renumber, so a compacted copy (`runner prune --backup`) rebuilds it.
CREATE VIRTUAL TABLE executions_fts USING fts5(
    title, content = 'executions', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO executions_fts(executions_fts) VALUES ('rebuild');
CREATE TRIGGER executions_fts_insert AFTER INSERT ON executions BEGIN
    INSERT INTO executions_fts(rowid, title) VALUES (new.rowid, new.title);
END;
CREATE TRIGGER executions_fts_delete AFTER DELETE ON executions BEGIN
    INSERT INTO executions_fts(executions_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
END;
CREATE TRIGGER executions_fts_update AFTER UPDATE OF title ON executions BEGIN
    INSERT INTO executions_fts(executions_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
    INSERT INTO executions_fts(rowid, title) VALUES (new.rowid, new.title);
END;
-- `/metrics` totals the whole ledger per model, status, cost source and
-- profile on every scrape: with every column it reads in one index, that is an
-- index-only scan in index order rather than a read of every ledger row.
CREATE INDEX llm_calls_totals ON llm_calls(model, status, cost_source, currency, profile,
    http_status, error_kind, prompt_tokens, completion_tokens, cost);
