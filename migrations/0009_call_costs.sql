-- Where a settled ledger row's cost came from, and its currency (issue #16).
-- cost_source: 'provider' (the provider's own figure, e.g. OpenRouter's
-- usage.cost), 'price_table' (tokens × the profile's `price`), 'unknown'
-- (neither: no price and no provider figure, or no usage reported), or
-- 'none' (nothing billable: a reused response, a request the provider
-- refused with an HTTP error). NULL only while a row is reserved.
ALTER TABLE llm_calls ADD COLUMN cost_source TEXT
    CHECK (cost_source IS NULL OR cost_source IN ('provider', 'price_table', 'unknown', 'none'));
ALTER TABLE llm_calls ADD COLUMN currency TEXT;
-- Rows settled before this migration: a cost could only come from the
-- provider's usage.cost then (OpenRouter credits are US dollars).
UPDATE llm_calls SET
    cost_source = CASE
        WHEN status = 'reused' THEN 'none'
        WHEN cost IS NOT NULL THEN 'provider'
        ELSE 'unknown' END,
    currency = CASE WHEN cost IS NOT NULL AND status != 'reused' THEN 'USD' END,
    cost = CASE WHEN status = 'reused' THEN 0 ELSE cost END
WHERE status != 'reserved';
