-- The dashboard's lists and charts; SQLite migration 0012 says why each
-- index exists. Title search is PostgreSQL's own full-text search over a
-- GIN expression index, with the same word-prefix semantics as SQLite's
-- FTS5 index.
CREATE INDEX executions_recent ON executions(updated_at, id);
CREATE INDEX executions_status_recent ON executions(status, updated_at, id);
CREATE INDEX executions_failed_kind ON executions(last_error_kind, updated_at, id)
    WHERE status = 'failed';
CREATE INDEX llm_calls_dash ON llm_calls(reserved_at, model, status, http_status, latency_ms);
DROP INDEX llm_calls_time;
CREATE INDEX executions_title_search ON executions
    USING gin (to_tsvector('simple', coalesce(title, '')));
