-- Back to per-user running totals (the ledger's used balances), dropping the ledger.
CREATE TABLE usage_totals (
    user_id       BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period_start  TIMESTAMP NOT NULL,
    used_tokens   BIGINT    NOT NULL,
    PRIMARY KEY (user_id, period_start)
);
INSERT INTO usage_totals (user_id, period_start, used_tokens)
SELECT CAST(substr(account, 6, length(account) - 10) AS BIGINT), period_start, balance
  FROM ledger_balances WHERE account LIKE 'user:%:used';
DROP TABLE audit_log;
DROP TABLE notifications;
DROP TABLE quota_requests;
DROP TABLE transfers;
DROP TABLE vacation_releases;
DROP TABLE pool_draws;
DROP TABLE lease_pool_holds;
DROP INDEX leases_unreleased;
ALTER TABLE leases DROP COLUMN released_at;
ALTER TABLE leases DROP COLUMN hold_overdraft;
ALTER TABLE leases DROP COLUMN hold_pool;
ALTER TABLE leases DROP COLUMN hold_personal;
ALTER TABLE leases DROP COLUMN class;
DROP TABLE allocations;
DROP TABLE ledger_balances;
DROP TABLE ledger_entries;
DROP TABLE ledger_movements;
ALTER TABLE users DROP COLUMN overdraft_enabled;
DROP TABLE team_members;
DROP TABLE teams;
