-- Zidium's SendEvent and components (SPEC §1.2). joined_events gains what SendEvent adds to a join record: the
-- event type's names and code, the category, and the Properties ({Name, Value, Type}) of the last record that
-- carried any. JoinEvents rows leave them empty.
ALTER TABLE joined_events
    ADD COLUMN category          String DEFAULT '',
    ADD COLUMN type_system_name  String DEFAULT '',
    ADD COLUMN type_display_name String DEFAULT '',
    ADD COLUMN type_code         String DEFAULT '',
    ADD COLUMN properties        Nested(name String, value String, type String);

DROP TABLE IF EXISTS joined_events_final;

CREATE VIEW IF NOT EXISTS joined_events_final AS
SELECT account_id, event_id, component_id, type_id, join_key, importance, start_time, end_time, actual_time,
       start_time_ms, end_time_ms, actual_time_ms, count, message, version, records, row_version,
       category, type_system_name, type_display_name, type_code, properties.name, properties.value, properties.type
FROM {database}.joined_events FINAL;

-- One row per Zidium component (consumers: components), written by GetRootComponent, GetOrAddComponent and
-- UpdateComponent. row_version orders the writes of one component without coordination between gateways: an
-- 'add' has 2^62 - received_at_ms (the first add wins: a component, once there, is what GetOrAdd returns) and an
-- 'update' 2^62 + received_at_ms (any update beats every add; the latest update wins). A null property value
-- is stored as ''.
CREATE TABLE IF NOT EXISTS components (
    account_id     String,
    component_id   String,
    parent_id      Nullable(String),
    system_name    String,
    display_name   String,
    type_id        String,
    version        Nullable(String),
    properties     Nested(name String, value String, type String),
    created_at     DateTime,
    created_at_ms  UInt64,
    updated_at     DateTime,
    operation      Enum8('add' = 1, 'update' = 2),
    source         Enum8('http' = 1, 'kafka' = 2),
    row_version    UInt64,
    written_at     DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(row_version)
ORDER BY (account_id, component_id);

CREATE VIEW IF NOT EXISTS components_final AS
SELECT account_id, component_id, parent_id, system_name, display_name, type_id, version, properties.name,
       properties.value, properties.type, created_at, created_at_ms, updated_at, operation, row_version
FROM {database}.components FINAL;
