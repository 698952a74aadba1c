-- Usage analytics (organisation-wide, by day, model, user or project over a range of
-- days) read usage_records by `created_at`. This index leads with `created_at` and
-- carries every column those queries read, so they are answered from the index alone
-- (a covering index: no table look-up per record). Records arrive in `created_at`
-- order, so ingestion appends at the index's right edge. One user's analytics use
-- usage_records_user_created (user_id, created_at).
CREATE INDEX usage_records_analytics ON usage_records (
    created_at, user_id, model, project_id,
    input_tokens, output_tokens, total_tokens, cost_nano_usd, unpriced
);
