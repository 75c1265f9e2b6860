-- Claims walk an index instead of sorting the queue. The claim order is
-- resumable work first, then phase, priority (high first), age, id; the
-- claim query looks up one status at a time in that order, so each lookup
-- is the first matching entry of one of these indexes. Rows with a future
-- not_before or a cancel request are skipped while walking (few).
DROP INDEX IF EXISTS executions_claim;
CREATE INDEX executions_ready ON executions(status, priority DESC, created_at, id)
    WHERE phase_execution IS NULL;
CREATE INDEX executions_resumable ON executions(status, priority DESC, created_at, id)
    WHERE phase_execution IS NOT NULL;
