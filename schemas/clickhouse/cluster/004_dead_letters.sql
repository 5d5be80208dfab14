-- Cluster form of ../004_dead_letters.sql: sharded by a hash of the dedup key (received_at, dedup_key).
CREATE TABLE IF NOT EXISTS {database}.dead_letters_local ON CLUSTER {cluster} (
    received_at     DateTime,
    received_at_ms  UInt64,
    source          Enum8('http' = 1, 'kafka' = 2),
    topic           Nullable(String),
    partition       Nullable(Int32),
    offset          Nullable(Int64),
    account_id      Nullable(String),
    reason          String,
    payload         String,
    dedup_key       String,
    written_at      DateTime DEFAULT now()
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database_name}/{shard}/dead_letters', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, dedup_key);

CREATE TABLE IF NOT EXISTS {database}.dead_letters ON CLUSTER {cluster} AS {database}.dead_letters_local
ENGINE = Distributed({cluster}, '{database_name}', 'dead_letters_local', cityHash64(received_at, dedup_key));

CREATE VIEW IF NOT EXISTS {database}.dead_letters_final ON CLUSTER {cluster} AS
SELECT received_at, received_at_ms, source, topic, partition, offset, account_id, reason, payload
FROM {database}.dead_letters FINAL;
