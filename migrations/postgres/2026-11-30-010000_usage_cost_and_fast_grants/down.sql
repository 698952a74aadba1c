DROP FUNCTION alfred_grant_lease(TEXT, TEXT, BIGINT, TEXT, TIMESTAMP, TIMESTAMP, TIMESTAMP, TEXT);
ALTER TABLE usage_totals RESET (fillfactor);
ALTER TABLE leases RESET (fillfactor);
CREATE INDEX usage_records_user_period ON usage_records (user_id, period_start);
ALTER TABLE usage_records DROP COLUMN unpriced;
ALTER TABLE usage_records DROP COLUMN cost_nano_usd;
