-- Usage ingestion writes a usage_records row per record and a usage_daily row per
-- (day, user, model, project, provider) and round. Each of those rows' foreign key to
-- users ran a referential-integrity query per row (SELECT … FOR KEY SHARE on the user,
-- through SPI): about a quarter of PostgreSQL's CPU per ingested record. The keys add
-- nothing here: ingestion checks in the same transaction that every user it charges
-- exists, and users are never deleted (soft deletion keeps the row: `deleted_at`), so
-- the cascade never fired. Other tables keep their keys; SQLite keeps these two too
-- (its check is an in-process index look-up).
ALTER TABLE usage_records DROP CONSTRAINT usage_records_user_id_fkey;
ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_user_id_fkey;
