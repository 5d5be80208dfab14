-- One row per (account_id, type, session), rewritten by the sessions worker each time the session changes.
-- row_version is the Kafka offset of the event that produced the change, so the newest state wins in
-- sessions_final whatever was replayed or written twice. Times are the events' own (UNIX seconds).
CREATE TABLE IF NOT EXISTS sessions (
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
) ENGINE = ReplacingMergeTree(row_version)
ORDER BY (account_id, type, session);

CREATE VIEW IF NOT EXISTS sessions_final AS
SELECT account_id, type, session, status, start_time, end_time, duration_s, update_count, row_version
FROM {database}.sessions FINAL;
