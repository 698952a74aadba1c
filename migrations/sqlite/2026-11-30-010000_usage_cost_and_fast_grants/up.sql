-- Cost of each usage record, computed at ingestion from the price catalog
-- (control-plane/src/pricing). Keep in step with migrations/postgres.
--
-- cost_nano_usd: billionths of a US dollar, an exact integer (a gpt-4o-mini request of
-- 12 input tokens costs 1,800 nano-USD). unpriced: the model had no price, so the cost
-- is unknown, never "free". Rows written before this migration were never priced.
ALTER TABLE usage_records ADD COLUMN cost_nano_usd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN unpriced BOOLEAN NOT NULL DEFAULT TRUE;

-- Every index costs each ingested record a b-tree insert. Period queries use
-- (user_id, created_at): a period is a range of created_at (the ingestion clock).
DROP INDEX usage_records_user_period;

-- (The PostgreSQL migration also defines alfred_grant_lease(), the one-round-trip
-- grant; SQLite runs the same steps in-process, see control-plane/src/leases.)
