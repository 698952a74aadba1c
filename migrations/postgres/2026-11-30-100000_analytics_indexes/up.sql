-- Usage analytics (organisation-wide, by day, model, user or project over a range of
-- days) read usage_records by `created_at`. The key is `created_at` alone; the other
-- columns those queries read ride along (INCLUDE), so a range can be answered by an
-- index-only scan once autovacuum has marked the pages all-visible. Records arrive in
-- `created_at` order, so ingestion appends at the index's right edge. One user's
-- analytics use usage_records_user_created (user_id, created_at).
CREATE INDEX usage_records_analytics ON usage_records (created_at)
    INCLUDE (user_id, model, project_id, input_tokens, output_tokens, total_tokens,
             cost_nano_usd, unpriced);
