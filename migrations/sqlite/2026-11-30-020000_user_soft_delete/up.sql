-- Deleting a user is a soft delete: the row (and its usage history, which analytics
-- and the ledger need) stays; the user's keys are revoked and the user is hidden from
-- the admin API. Its email stays taken.
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMP;
