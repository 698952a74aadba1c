-- PostgreSQL drops the foreign keys of usage_records.user_id and usage_daily.user_id
-- here (a per-row referential-integrity query). SQLite keeps them: its check is an
-- in-process index look-up. Kept so both sets have the same versions.
SELECT 1;
