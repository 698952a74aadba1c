CREATE INDEX usage_records_analytics ON usage_records (created_at)
    INCLUDE (user_id, model, project_id, input_tokens, output_tokens, total_tokens,
             cost_nano_usd, unpriced);
DROP TABLE usage_daily;
