-- Cluster form of ../002_sessions.sql: sharded by a hash of the dedup key (account_id, type, session).
CREATE TABLE IF NOT EXISTS {database}.sessions_local ON CLUSTER {cluster} (
    account_id   String,
    type         String,
    session      String,
    status       Enum8('open' = 1, 'closed' = 2, 'timed_out' = 3, 'orphan' = 4),
    start_time   Nullable(DateTime),
    end_time     Nullable(DateTime),
    duration_s   Nullable(Int64),
    update_count UInt32,
    row_version  UInt64,
    written_at   DateTime DEFAULT now()
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database_name}/{shard}/sessions', '{replica}', row_version)
ORDER BY (account_id, type, session);

CREATE TABLE IF NOT EXISTS {database}.sessions ON CLUSTER {cluster} AS {database}.sessions_local
ENGINE = Distributed({cluster}, '{database_name}', 'sessions_local', cityHash64(account_id, type, session));

CREATE VIEW IF NOT EXISTS {database}.sessions_final ON CLUSTER {cluster} AS
SELECT account_id, type, session, status, start_time, end_time, duration_s, update_count, row_version
FROM {database}.sessions FINAL;
