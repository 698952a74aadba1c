-- The quota engine: teams, the double-entry ledger and what hangs off it (transfers,
-- quota requests, vacation releases, notifications, audit). Keep in step with
-- migrations/sqlite. The rules are in docs/quota-model.md.

CREATE TABLE teams (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    common_pool  BIGINT  NOT NULL CHECK (common_pool >= 0),
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    deleted_at   TIMESTAMP
);
CREATE UNIQUE INDEX teams_live_name ON teams (name) WHERE deleted_at IS NULL;

CREATE TABLE team_members (
    team_id     BIGINT  NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_admin    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

-- Admins can take a user's critical overdraft away.
ALTER TABLE users ADD COLUMN overdraft_enabled BOOLEAN NOT NULL DEFAULT TRUE;

-- A movement of credit: its entries (one per account touched) sum to zero.
CREATE TABLE ledger_movements (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    user_id     BIGINT,
    team_id     BIGINT,
    actor_id    BIGINT,
    reference   TEXT,
    note        TEXT
);
CREATE INDEX ledger_movements_user ON ledger_movements (user_id, id);

CREATE TABLE ledger_entries (
    id            BIGSERIAL PRIMARY KEY,
    movement_id   BIGINT  NOT NULL REFERENCES ledger_movements (id),
    account       TEXT    NOT NULL,
    period_start  TIMESTAMP NOT NULL,
    amount        BIGINT  NOT NULL
);
CREATE INDEX ledger_entries_movement ON ledger_entries (movement_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account, period_start);

-- Each account's balance per period, kept equal to the sum of its entries by the same
-- transaction that writes them. Only the issuer, overdraft and debt accounts may go
-- below zero; the ledger checks every balance it writes (control-plane/src/ledger)
-- and rolls the transaction back otherwise. (Not a CHECK constraint: both backends
-- check the proposed row of an upsert, i.e. the negative delta, before the update.)
CREATE TABLE ledger_balances (
    account       TEXT    NOT NULL,
    period_start  TIMESTAMP NOT NULL,
    balance       BIGINT  NOT NULL,
    PRIMARY KEY (account, period_start)
);

-- Which owners ('user:5', 'team:3') had their period allocation posted.
CREATE TABLE allocations (
    owner         TEXT    NOT NULL,
    period_start  TIMESTAMP NOT NULL,
    amount        BIGINT  NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (owner, period_start)
);

-- Where each lease's tokens came from: personal first, then team pools, then the
-- critical overdraft. Usage consumes them in that order; a release returns the rest
-- in the reverse order.
ALTER TABLE leases ADD COLUMN class TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE leases ADD COLUMN hold_personal BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN hold_pool BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN hold_overdraft BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN released_at TIMESTAMP;
-- Leases granted before the ledger held nothing in it. The grant function is replaced
-- by the ledger's grant in control-plane/src/leases (same steps on both backends).
DROP FUNCTION alfred_grant_lease(TEXT, TEXT, BIGINT, TEXT, TIMESTAMP, TIMESTAMP, TIMESTAMP, TEXT);
UPDATE leases SET released_at = created_at;
CREATE INDEX leases_unreleased ON leases (expires_at) WHERE released_at IS NULL;

CREATE TABLE lease_pool_holds (
    lease_id  TEXT    NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    team_id   BIGINT  NOT NULL,
    day       TIMESTAMP NOT NULL,
    amount    BIGINT  NOT NULL,
    PRIMARY KEY (lease_id, team_id, day)
);

-- What each member drew from a team pool per UTC day (holds net of releases).
CREATE TABLE pool_draws (
    team_id  BIGINT  NOT NULL,
    user_id  BIGINT  NOT NULL,
    day      TIMESTAMP NOT NULL,
    tokens   BIGINT  NOT NULL,
    PRIMARY KEY (team_id, user_id, day)
);

CREATE TABLE vacation_releases (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team_id       BIGINT  NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    period_start  TIMESTAMP NOT NULL,
    amount        BIGINT  NOT NULL CHECK (amount >= 0),
    returned      BIGINT  NOT NULL DEFAULT 0,
    created_at    TIMESTAMP NOT NULL,
    returned_at   TIMESTAMP
);
CREATE INDEX vacation_releases_user ON vacation_releases (user_id, period_start);
CREATE INDEX vacation_releases_team ON vacation_releases (team_id, period_start);

CREATE TABLE transfers (
    id             BIGSERIAL PRIMARY KEY,
    sender_id      BIGINT  NOT NULL REFERENCES users (id),
    recipient_id   BIGINT  NOT NULL REFERENCES users (id),
    amount         BIGINT  NOT NULL CHECK (amount > 0),
    reason         TEXT    NOT NULL,
    status         TEXT    NOT NULL
                   CHECK (status IN ('completed', 'pending', 'denied', 'expired')),
    created_at     TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP,
    decided_at     TIMESTAMP,
    decided_by     BIGINT,
    decision_note  TEXT
);
CREATE INDEX transfers_created ON transfers (created_at);
CREATE INDEX transfers_sender ON transfers (sender_id, created_at);
CREATE INDEX transfers_recipient ON transfers (recipient_id, created_at);

CREATE TABLE quota_requests (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT  NOT NULL REFERENCES users (id),
    amount         BIGINT  NOT NULL CHECK (amount > 0),
    reason         TEXT    NOT NULL,
    status         TEXT    NOT NULL
                   CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    created_at     TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP NOT NULL,
    decided_at     TIMESTAMP,
    decided_by     BIGINT,
    decision_note  TEXT
);
CREATE INDEX quota_requests_status ON quota_requests (status, created_at);
CREATE INDEX quota_requests_user ON quota_requests (user_id, created_at);

CREATE TABLE notifications (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    data        TEXT    NOT NULL DEFAULT '{}',
    created_at  TIMESTAMP NOT NULL,
    read_at     TIMESTAMP
);
CREATE INDEX notifications_user ON notifications (user_id, id);

CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    actor_id     BIGINT,
    action       TEXT    NOT NULL,
    target_kind  TEXT    NOT NULL,
    target_id    TEXT,
    details      TEXT    NOT NULL DEFAULT '{}',
    created_at   TIMESTAMP NOT NULL
);
CREATE INDEX audit_log_created ON audit_log (created_at);
CREATE INDEX audit_log_action ON audit_log (action, created_at);

-- Usage already charged moves into the ledger: per (user, period) an allocation of the
-- user's quota and one 'opening' movement that spends it. The running totals table
-- is replaced by the ledger's `user:<id>:used` balances.
INSERT INTO allocations (owner, period_start, amount, created_at)
SELECT 'user:' || t.user_id, t.period_start, u.personal_quota, CURRENT_TIMESTAMP
  FROM usage_totals t JOIN users u ON u.id = t.user_id;
INSERT INTO ledger_movements (kind, created_at, user_id, reference)
SELECT 'opening', CURRENT_TIMESTAMP, t.user_id, CAST(t.period_start AS TEXT)
  FROM usage_totals t;
INSERT INTO ledger_entries (movement_id, account, period_start, amount)
SELECT m.id, 'org:issued', t.period_start, -u.personal_quota
  FROM usage_totals t
  JOIN users u ON u.id = t.user_id
  JOIN ledger_movements m ON m.kind = 'opening' AND m.user_id = t.user_id
                         AND m.reference = CAST(t.period_start AS TEXT)
 WHERE u.personal_quota <> 0;
INSERT INTO ledger_entries (movement_id, account, period_start, amount)
SELECT m.id, 'user:' || t.user_id || ':personal', t.period_start, GREATEST(u.personal_quota - t.used_tokens, 0)
  FROM usage_totals t
  JOIN users u ON u.id = t.user_id
  JOIN ledger_movements m ON m.kind = 'opening' AND m.user_id = t.user_id
                         AND m.reference = CAST(t.period_start AS TEXT)
 WHERE u.personal_quota > t.used_tokens;
INSERT INTO ledger_entries (movement_id, account, period_start, amount)
SELECT m.id, 'user:' || t.user_id || ':used', t.period_start, t.used_tokens
  FROM usage_totals t
  JOIN users u ON u.id = t.user_id
  JOIN ledger_movements m ON m.kind = 'opening' AND m.user_id = t.user_id
                         AND m.reference = CAST(t.period_start AS TEXT)
 WHERE t.used_tokens <> 0;
INSERT INTO ledger_entries (movement_id, account, period_start, amount)
SELECT m.id, 'user:' || t.user_id || ':debt', t.period_start, -GREATEST(t.used_tokens - u.personal_quota, 0)
  FROM usage_totals t
  JOIN users u ON u.id = t.user_id
  JOIN ledger_movements m ON m.kind = 'opening' AND m.user_id = t.user_id
                         AND m.reference = CAST(t.period_start AS TEXT)
 WHERE t.used_tokens > u.personal_quota;
INSERT INTO ledger_balances (account, period_start, balance)
SELECT account, period_start, SUM(amount) FROM ledger_entries GROUP BY account, period_start;
DROP TABLE usage_totals;
ALTER TABLE ledger_balances SET (fillfactor = 80);
