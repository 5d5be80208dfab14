-- Cluster form of ../005_consumer_state.sql. Sharded by (consumer_group, topic, partition) — a prefix of the
-- dedup key — so all rows of one Kafka partition, its checkpoint included, live on one shard and one write step
-- of a partition stays one block there (all of it or none of it). Writes use insert_quorum and restores
-- select_sequential_consistency (consumers/clickhouse_io.py): a worker restored through any node reads what the
-- previous owner wrote, or fails and retries — never an older state.
CREATE TABLE IF NOT EXISTS {database}.consumer_state_local ON CLUSTER {cluster} (
    consumer_group String,
    topic          String,
    partition      UInt32,
    key            String,
    state          String,
    version        UInt64,
    deleted        UInt8,
    written_at     DateTime DEFAULT now()
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database_name}/{shard}/consumer_state', '{replica}', version)
ORDER BY (consumer_group, topic, partition, key);

CREATE TABLE IF NOT EXISTS {database}.consumer_state ON CLUSTER {cluster} AS {database}.consumer_state_local
ENGINE = Distributed({cluster}, '{database_name}', 'consumer_state_local', cityHash64(consumer_group, topic, partition));
