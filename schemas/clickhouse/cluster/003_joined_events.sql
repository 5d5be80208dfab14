-- Cluster form of ../003_joined_events.sql with ../006_zidium.sql's columns folded in (a cluster starts from
-- the current shape: ALTERs of Replicated tables ON CLUSTER are avoided). Sharded by a hash of the dedup key.
CREATE TABLE IF NOT EXISTS {database}.joined_events_local ON CLUSTER {cluster} (
    account_id        String,
    event_id          String,
    component_id      String,
    type_id           String,
    join_key          Int64,
    importance        Enum16('Unknown' = 0, 'Success' = 50, 'Warning' = 100, 'Alarm' = 150),
    start_time        DateTime,
    end_time          DateTime,
    actual_time       DateTime,
    start_time_ms     UInt64,
    end_time_ms       UInt64,
    actual_time_ms    UInt64,
    count             Int64,
    message           String,
    version           Nullable(String),
    records           UInt32,
    row_version       UInt64,
    written_at        DateTime DEFAULT now(),
    category          String DEFAULT '',
    type_system_name  String DEFAULT '',
    type_display_name String DEFAULT '',
    type_code         String DEFAULT '',
    properties        Nested(name String, value String, type String)
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database_name}/{shard}/joined_events', '{replica}', row_version)
ORDER BY (account_id, component_id, type_id, event_id);

CREATE TABLE IF NOT EXISTS {database}.joined_events ON CLUSTER {cluster} AS {database}.joined_events_local
ENGINE = Distributed({cluster}, '{database_name}', 'joined_events_local',
                     cityHash64(account_id, component_id, type_id, event_id));

CREATE VIEW IF NOT EXISTS {database}.joined_events_final ON CLUSTER {cluster} AS
SELECT account_id, event_id, component_id, type_id, join_key, importance, start_time, end_time, actual_time,
       start_time_ms, end_time_ms, actual_time_ms, count, message, version, records, row_version,
       category, type_system_name, type_display_name, type_code, properties.name, properties.value, properties.type
FROM {database}.joined_events FINAL;
