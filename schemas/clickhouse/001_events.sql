-- Every accepted v3 event (consumers: events sink). Rows never change; a record delivered twice (Kafka replay,
-- a retried HTTP batch) has the same event_id, so ReplacingMergeTree keeps one row per (account_id, event_id)
-- and events_final reads it with FINAL. row_version is the Kafka offset of the delivery (the latest one wins).
CREATE TABLE IF NOT EXISTS events (
    account_id      String,
    event_id        String,
    action          Enum8('START' = 1, 'UPDATE' = 2, 'END' = 3),
    type            String,
    event_time      DateTime,
    session         Nullable(String),
    entities        Nested(key String, value String),
    received_at     DateTime,
    received_at_ms  UInt64,
    source          Enum8('http' = 1, 'kafka' = 2),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    row_version     UInt64
) ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (account_id, event_id);

CREATE VIEW IF NOT EXISTS events_final AS
SELECT account_id, event_id, action, type, event_time, session, entities.key, entities.value,
       received_at, received_at_ms, source, kafka_partition, kafka_offset, row_version
FROM {database}.events FINAL;
