-- One row per joined event (consumers: joins), rewritten each time a join record extends it. row_version is
-- the Kafka offset of the record that produced the change. Times are DateTime (seconds) with the exact
-- milliseconds beside them in *_ms columns.
CREATE TABLE IF NOT EXISTS joined_events (
    account_id     String,
    event_id       String,
    component_id   String,
    type_id        String,
    join_key       Int64,
    importance     Enum16('Unknown' = 0, 'Success' = 50, 'Warning' = 100, 'Alarm' = 150),
    start_time     DateTime,
    end_time       DateTime,
    actual_time    DateTime,
    start_time_ms  UInt64,
    end_time_ms    UInt64,
    actual_time_ms UInt64,
    count          Int64,
    message        String,
    version        Nullable(String),
    records        UInt32,
    row_version    UInt64,
    written_at     DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(row_version)
ORDER BY (account_id, component_id, type_id, event_id);

CREATE VIEW IF NOT EXISTS joined_events_final AS
SELECT account_id, event_id, component_id, type_id, join_key, importance, start_time, end_time, actual_time,
       start_time_ms, end_time_ms, actual_time_ms, count, message, version, records, row_version
FROM {database}.joined_events FINAL;
