DROP INDEX usage_records_analytics;
