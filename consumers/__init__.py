"""eventpipe's Kafka → ClickHouse workers: ``python -m consumers events|sessions|joins|deadletters``.

Layout (one file per step, pure modules first):

* ``rules.py`` — SPEC §1 rules re-checked on records from Kafka (pure);
* ``sessions.py`` / ``joins.py`` — the session pairer and join-window state machines (pure);
* ``processors.py`` — per worker: decode → check → apply, returning rows, dead letters and state changes (pure);
* ``state.py`` — how state outlives a batch (the mechanism is documented there);
* ``batch.py`` — accumulator, flush policy, clock, backoff;
* ``kafka_io.py`` — the Kafka boundary, implemented by ``confluent_io.py`` (librdkafka) and ``kafka_python_io.py``,
  the only modules importing a Kafka client; ``clickhouse_io.py`` — the only one importing clickhouse-driver;
* ``worker.py`` — the loop: poll → decode → apply → batch → write → commit;
* ``metrics.py``, ``logs.py``, ``__main__.py``.
"""
