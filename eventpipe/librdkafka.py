"""librdkafka settings shared by every eventpipe producer and consumer: how they come back after Kafka was away.

Only a dict of configuration keys, so importing it does not import ``confluent_kafka``.
"""

RECOVERY = {
    # Reconnect quickly when Kafka returns.
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 1_000,
    # After the single broker of `make run` restarted, a consumer sometimes tried no connection at all ("no
    # broker available for coordinator query", debug=cgrp) until librdkafka went back to bootstrap.servers:
    # after this long without metadata, 5 minutes by default (it forgets a broker missing from a metadata
    # response, which a broker shutting down may send). Meanwhile the consumer cannot rejoin its group. That
    # happened in 2 of 14 runs of test_kafka_outage.py with a CPU kept busy alongside; with 5 or 10 s, in none
    # of 24.
    "metadata.recovery.rebootstrap.trigger.ms": 10_000,
}
