-- State that outlives a batch (open sessions, open join windows), written by the stateful workers in the same
-- write step as their rows and before the Kafka commit; see consumers/state.py. One row per change of a key;
-- version is the Kafka offset that produced it, deleted = 1 when the key was evicted. The reserved key
-- '' holds the partition checkpoint (watermark and the next offset to read), written in the same INSERT block.
CREATE TABLE IF NOT EXISTS consumer_state (
    consumer_group String,
    topic          String,
    partition      UInt32,
    key            String,
    state          String,
    version        UInt64,
    deleted        UInt8,
    written_at     DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version)
ORDER BY (consumer_group, topic, partition, key);
