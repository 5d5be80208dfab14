-- Cluster form of the components table of ../006_zidium.sql: sharded by a hash of (account_id, component_id).
CREATE TABLE IF NOT EXISTS {database}.components_local ON CLUSTER {cluster} (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database_name}/{shard}/components', '{replica}', row_version)
ORDER BY (account_id, component_id);

CREATE TABLE IF NOT EXISTS {database}.components ON CLUSTER {cluster} AS {database}.components_local
ENGINE = Distributed({cluster}, '{database_name}', 'components_local', cityHash64(account_id, component_id));

CREATE VIEW IF NOT EXISTS {database}.components_final ON CLUSTER {cluster} AS
SELECT account_id, component_id, parent_id, system_name, display_name, type_id, version, properties.name,
       properties.value, properties.type, created_at, created_at_ms, updated_at, operation, row_version
FROM {database}.components FINAL;
