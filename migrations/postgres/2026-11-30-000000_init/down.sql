DROP TABLE usage_totals;
DROP TABLE usage_records;
DROP TABLE leases;
DROP TABLE api_keys;
DROP TABLE users;
