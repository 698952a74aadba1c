ALTER TABLE usage_daily ADD CONSTRAINT usage_daily_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE usage_records ADD CONSTRAINT usage_records_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
