-- Cluster form of ../001_events.sql (applied instead of it when EVENTPIPE_CLICKHOUSE_CLUSTER is set).
-- events_local is the Replicated table on every node (one ZooKeeper path per shard, one replica per node);
-- events is the Distributed table analysts and workers use. The sharding key is a hash of the dedup key
-- (account_id, event_id), so every copy of one event lands on one shard and FINAL there collapses it.
CREATE TABLE IF NOT EXISTS {database}.events_local ON CLUSTER {cluster} (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database_name}/{shard}/events', '{replica}', row_version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (account_id, event_id);

CREATE TABLE IF NOT EXISTS {database}.events ON CLUSTER {cluster} AS {database}.events_local
ENGINE = Distributed({cluster}, '{database_name}', 'events_local', cityHash64(account_id, event_id));

-- FINAL through the Distributed table runs on each shard; the sharding key makes that enough.
CREATE VIEW IF NOT EXISTS {database}.events_final ON CLUSTER {cluster} AS
SELECT account_id, event_id, action, type, event_time, session, entities.key, entities.value,
       received_at, received_at_ms, source, kafka_partition, kafka_offset, row_version
FROM {database}.events FINAL;
