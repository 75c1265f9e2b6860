-- The dashboard's lists and charts; SQLite migration 0012 says why each
-- index exists. Title search is PostgreSQL's own full-text search over a
-- GIN expression index, with the same word-prefix semantics as SQLite's
-- FTS5 index.
CREATE INDEX executions_recent ON executions(updated_at, id);
CREATE INDEX executions_status_recent ON executions(status, updated_at, id);
CREATE INDEX executions_failed_kind ON executions(last_error_kind, updated_at, id)
    WHERE status = 'failed';
-- Papers finished per period (the done chart, `done_last_hour/day`, the
-- forecast's samples) read straight from one index range.
CREATE INDEX execution_events_finished ON execution_events(kind, phase, at);
CREATE INDEX llm_calls_dash ON llm_calls(reserved_at, model, status, http_status, latency_ms,
    profile, cost_source, total_tokens, cost, worst_tokens, worst_cost);
DROP INDEX llm_calls_time;
CREATE INDEX executions_title_search ON executions
    USING gin (to_tsvector('simple', coalesce(title, '')));
-- `/metrics` totals the whole ledger per model, status, cost source and
-- profile on every scrape: with every column it reads in one index, that is an
-- index-only scan in index order rather than a read of every ledger row.
CREATE INDEX llm_calls_totals ON llm_calls(model, status, cost_source, currency, profile,
    http_status, error_kind, prompt_tokens, completion_tokens, cost);
