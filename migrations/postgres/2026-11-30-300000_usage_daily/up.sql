-- Per-day rollup of usage_records for analytics: one row per UTC day of ingestion
-- (`created_at`, the clock quotas are charged by), user, model, project ('' for
-- requests without one) and provider. Usage ingestion adds to it in the same
-- transaction as it inserts the records, only for records actually inserted (a
-- repeated batch adds nothing), so it always equals the aggregate of usage_records.
-- Analytics read it instead of the records: a range costs rows per (day, user, model,
-- project, provider), not per request. Keep in step with migrations/sqlite.
--
-- The primary key leads with the day (organisation-wide ranges); one user's range
-- uses usage_daily_user. A fillfactor of 80 leaves room for the in-place (HOT)
-- updates ingestion makes to today's rows.
CREATE TABLE usage_daily (
    day                  DATE    NOT NULL,
    user_id              BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model                TEXT    NOT NULL,
    project_id           TEXT    NOT NULL,
    provider             TEXT    NOT NULL,
    requests             BIGINT  NOT NULL,
    -- status 200–299; every other status (0 included: no answer) is failed.
    successful_requests  BIGINT  NOT NULL,
    failed_requests      BIGINT  NOT NULL,
    -- estimated = true: a stream cut before the provider reported usage.
    estimated_requests   BIGINT  NOT NULL,
    input_tokens         BIGINT  NOT NULL,
    output_tokens        BIGINT  NOT NULL,
    total_tokens         BIGINT  NOT NULL,
    cached_tokens        BIGINT  NOT NULL,
    reasoning_tokens     BIGINT  NOT NULL,
    -- total_tokens of the failed, resp. estimated, requests.
    failed_tokens        BIGINT  NOT NULL,
    estimated_tokens     BIGINT  NOT NULL,
    cost_nano_usd        BIGINT  NOT NULL,
    unpriced_requests    BIGINT  NOT NULL,
    PRIMARY KEY (day, user_id, model, project_id, provider)
) WITH (fillfactor = 80);
CREATE INDEX usage_daily_user ON usage_daily (user_id, day);

INSERT INTO usage_daily (day, user_id, model, project_id, provider, requests,
    successful_requests, failed_requests, estimated_requests, input_tokens, output_tokens,
    total_tokens, cached_tokens, reasoning_tokens, failed_tokens, estimated_tokens,
    cost_nano_usd, unpriced_requests)
SELECT created_at::date, user_id, model, COALESCE(project_id, ''), provider,
    COUNT(*),
    COUNT(*) FILTER (WHERE status BETWEEN 200 AND 299),
    COUNT(*) FILTER (WHERE status NOT BETWEEN 200 AND 299),
    COUNT(*) FILTER (WHERE estimated),
    SUM(input_tokens), SUM(output_tokens), SUM(total_tokens), SUM(cached_tokens),
    SUM(reasoning_tokens),
    COALESCE(SUM(total_tokens) FILTER (WHERE status NOT BETWEEN 200 AND 299), 0),
    COALESCE(SUM(total_tokens) FILTER (WHERE estimated), 0),
    SUM(cost_nano_usd),
    COUNT(*) FILTER (WHERE unpriced)
FROM usage_records
GROUP BY created_at::date, user_id, model, COALESCE(project_id, ''), provider;

-- The analytics now read usage_daily; this covering index only slowed ingestion.
DROP INDEX usage_records_analytics;
