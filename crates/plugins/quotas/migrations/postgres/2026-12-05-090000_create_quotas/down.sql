DROP TABLE quota_usage;
DROP TABLE quota_daily;
