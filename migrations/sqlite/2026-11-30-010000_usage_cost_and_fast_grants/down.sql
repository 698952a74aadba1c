CREATE INDEX usage_records_user_period ON usage_records (user_id, period_start);
ALTER TABLE usage_records DROP COLUMN unpriced;
ALTER TABLE usage_records DROP COLUMN cost_nano_usd;
