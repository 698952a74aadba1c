-- Per-day rollup of usage_records for analytics: one row per UTC day of ingestion
-- (`created_at`, the clock quotas are charged by), user, model, project ('' for
-- requests without one) and provider. Usage ingestion adds to it in the same
-- transaction as it inserts the records, only for records actually inserted (a
-- repeated batch adds nothing), so it always equals the aggregate of usage_records.
-- Analytics read it instead of the records: a range costs rows per (day, user, model,
-- project, provider), not per request. Keep in step with migrations/postgres.
--
-- WITHOUT ROWID: the table is stored in primary-key order, so a range of days is one
-- contiguous scan of the table itself; one user's range uses usage_daily_user.
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
) WITHOUT ROWID;
CREATE INDEX usage_daily_user ON usage_daily (user_id, day);

-- diesel stores SQLite timestamps as `YYYY-MM-DD HH:MM:SS[.f]` and dates as
-- `YYYY-MM-DD`, so a record's day is the first ten characters of `created_at`.
INSERT INTO usage_daily (day, user_id, model, project_id, provider, requests,
    successful_requests, failed_requests, estimated_requests, input_tokens, output_tokens,
    total_tokens, cached_tokens, reasoning_tokens, failed_tokens, estimated_tokens,
    cost_nano_usd, unpriced_requests)
SELECT substr(created_at, 1, 10), user_id, model, COALESCE(project_id, ''), provider,
    COUNT(*),
    SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 1 ELSE 0 END),
    SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE 1 END),
    SUM(CASE WHEN estimated THEN 1 ELSE 0 END),
    SUM(input_tokens), SUM(output_tokens), SUM(total_tokens), SUM(cached_tokens),
    SUM(reasoning_tokens),
    SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE total_tokens END),
    SUM(CASE WHEN estimated THEN total_tokens ELSE 0 END),
    SUM(cost_nano_usd),
    SUM(CASE WHEN unpriced THEN 1 ELSE 0 END)
FROM usage_records
GROUP BY substr(created_at, 1, 10), user_id, model, COALESCE(project_id, ''), provider;

-- The analytics now read usage_daily; this covering index only slowed ingestion.
DROP INDEX usage_records_analytics;
