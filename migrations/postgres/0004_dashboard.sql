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
