-- Alfred initial schema (SQLite). Keep in step with migrations/postgres.
-- `INTEGER PRIMARY KEY` is SQLite's 64-bit rowid; diesel.toml maps it to BigInt.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    email           TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    personal_quota  BIGINT  NOT NULL CHECK (personal_quota >= 0),
    status          TEXT    NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'on_vacation', 'suspended')),
    is_admin        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash    TEXT    NOT NULL UNIQUE,
    key_prefix  TEXT    NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    revoked_at  TIMESTAMP
);
CREATE INDEX api_keys_user_id ON api_keys (user_id);

CREATE TABLE leases (
    id              TEXT    PRIMARY KEY NOT NULL,
    user_id         BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    proxy_id        TEXT    NOT NULL,
    granted_tokens  BIGINT  NOT NULL CHECK (granted_tokens >= 0),
    used_tokens     BIGINT  NOT NULL DEFAULT 0,
    priority        TEXT    NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    period_start    TIMESTAMP NOT NULL
);
CREATE INDEX leases_user_expires ON leases (user_id, expires_at);

CREATE TABLE usage_records (
    id                INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    request_id        TEXT    NOT NULL UNIQUE,
    user_id           BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    lease_id          TEXT,
    proxy_id          TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    input_tokens      BIGINT  NOT NULL,
    output_tokens     BIGINT  NOT NULL,
    total_tokens      BIGINT  NOT NULL,
    cached_tokens     BIGINT  NOT NULL,
    reasoning_tokens  BIGINT  NOT NULL,
    status            INTEGER NOT NULL,
    estimated         BOOLEAN NOT NULL,
    priority          TEXT    NOT NULL,
    project_id        TEXT,
    privacy           TEXT    NOT NULL,
    occurred_at       TIMESTAMP NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    period_start      TIMESTAMP NOT NULL
);
CREATE INDEX usage_records_user_period ON usage_records (user_id, period_start);
CREATE INDEX usage_records_user_created ON usage_records (user_id, created_at);

-- Running total per user and period, maintained by usage ingestion in the same
-- transaction as the records, so a balance is one row read instead of a SUM over
-- every request of the month. (The double-entry ledger will take over this role.)
CREATE TABLE usage_totals (
    user_id       BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period_start  TIMESTAMP NOT NULL,
    used_tokens   BIGINT    NOT NULL,
    PRIMARY KEY (user_id, period_start)
);
