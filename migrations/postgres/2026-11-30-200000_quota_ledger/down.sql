-- Back to per-user running totals (the ledger's used balances), dropping the ledger.
CREATE TABLE usage_totals (
    user_id       BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period_start  TIMESTAMP NOT NULL,
    used_tokens   BIGINT    NOT NULL,
    PRIMARY KEY (user_id, period_start)
);
INSERT INTO usage_totals (user_id, period_start, used_tokens)
SELECT CAST(split_part(account, ':', 2) AS BIGINT), period_start, balance
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

-- The grant function of 2026-11-30-010000, as it was.
CREATE FUNCTION alfred_grant_lease(
    p_key_hash     TEXT,
    p_proxy_id     TEXT,
    p_requested    BIGINT,
    p_priority     TEXT,
    p_now          TIMESTAMP,
    p_period_start TIMESTAMP,
    p_expires_at   TIMESTAMP,
    p_new_lease_id TEXT,
    -- One row: what `grant()` in control-plane/src/leases/mod.rs maps to a decision.
    OUT out_decision  TEXT,    -- granted | invalid_key | suspended | exhausted
    OUT out_user_id   BIGINT,
    OUT out_lease_id  TEXT,
    OUT out_granted   BIGINT,  -- the lease's total grant
    OUT out_remaining BIGINT   -- quota_remaining
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_user      BIGINT;
    v_quota     BIGINT;
    v_status    TEXT;
    v_used      BIGINT;
    v_held      BIGINT;
    v_available BIGINT;
    v_extra     BIGINT;
    v_lease     TEXT;
    v_granted   BIGINT;
    v_lease_use BIGINT;
    v_total     BIGINT;
BEGIN
    out_granted := 0;
    out_remaining := 0;
    SELECT k.user_id INTO v_user
      FROM api_keys k
     WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        out_decision := 'invalid_key';
        RETURN;
    END IF;
    out_user_id := v_user;

    -- Held until commit.
    PERFORM pg_advisory_xact_lock(v_user);

    -- After the lock, in one statement (one snapshot): the user, the period's usage,
    -- the holds of all the user's unexpired leases, and this proxy's current lease.
    SELECT u.personal_quota, u.status,
           COALESCE((SELECT t.used_tokens FROM usage_totals t
                      WHERE t.user_id = u.id AND t.period_start = p_period_start), 0),
           COALESCE((SELECT SUM(GREATEST(l.granted_tokens - l.used_tokens, 0)) FROM leases l
                      WHERE l.user_id = u.id AND l.expires_at > p_now
                        AND l.period_start = p_period_start), 0),
           own.id, own.granted_tokens, own.used_tokens
      INTO v_quota, v_status, v_used, v_held, v_lease, v_granted, v_lease_use
      FROM users u
      LEFT JOIN LATERAL (
            SELECT l.id, l.granted_tokens, l.used_tokens FROM leases l
             WHERE l.user_id = u.id AND l.proxy_id = p_proxy_id AND l.expires_at > p_now
               AND l.period_start = p_period_start
             ORDER BY l.expires_at DESC, l.id
             LIMIT 1) own ON TRUE
     WHERE u.id = v_user;
    IF v_status = 'suspended' THEN
        out_decision := 'suspended';
        RETURN;
    END IF;

    v_available := v_quota - v_used - v_held;
    IF v_available <= 0 THEN
        out_decision := 'exhausted';
        RETURN;
    END IF;
    v_extra := LEAST(p_requested, v_available);

    IF v_lease IS NULL THEN
        INSERT INTO leases (id, user_id, proxy_id, granted_tokens, used_tokens, priority,
                            created_at, expires_at, period_start)
        VALUES (p_new_lease_id, v_user, p_proxy_id, v_extra, 0, p_priority,
                p_now, p_expires_at, p_period_start);
        out_decision := 'granted';
        out_lease_id := p_new_lease_id;
        out_granted := v_extra;
        out_remaining := v_available;
        RETURN;
    END IF;

    -- This proxy already holds a lease for the user: extend it.
    UPDATE leases SET granted_tokens = granted_tokens + v_extra, expires_at = p_expires_at
     WHERE id = v_lease
    RETURNING granted_tokens INTO v_total;
    out_decision := 'granted';
    out_lease_id := v_lease;
    out_granted := v_total;
    out_remaining := v_available + GREATEST(v_granted - v_lease_use, 0) + v_lease_use;
END;
$$;
