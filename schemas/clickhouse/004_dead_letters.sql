-- Everything eventpipe could not accept, with the reason (consumers: deadletters sink). A dead letter that
-- reaches the topic twice (a replayed consumer re-sends it) has the same dedup_key (a hash of all its fields),
-- so dead_letters_final shows it once. topic/partition/offset are NULL for records rejected over HTTP.
CREATE TABLE IF NOT EXISTS dead_letters (
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
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, dedup_key);

CREATE VIEW IF NOT EXISTS dead_letters_final AS
SELECT received_at, received_at_ms, source, topic, partition, offset, account_id, reason, payload
FROM {database}.dead_letters FINAL;
