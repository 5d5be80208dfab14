"""Kafka stopped and started again while the workers run: they pause, reconnect and resume by themselves, the
final rows equal the uninterrupted reference, and every record is committed in the end. In a file of its own (about
a minute) so test_workers.py stays under three minutes."""

from __future__ import annotations

import random
import time

import pytest

from eventpipe.settings import Settings

from .conftest import Workers, bring_back, wait_until
from .streams import SEED_END, SEED_START, Producer, event, random_events, random_joins, uncommitted
from .test_workers import _checkpoints, ch, converged


@pytest.mark.slow
def test_kafka_outage_mid_stream_loses_and_doubles_nothing(isolated_settings: Settings, workers: Workers) -> None:
    from deploy import kafka

    s = isolated_settings
    if not s.local_kafka or not kafka.is_running(s):
        pytest.skip("Kafka is not the local broker managed by deploy/kafka.py")
    rng = random.Random(17)
    evs, joins = random_events(rng, 200), random_joins(rng, 200)
    producer = Producer(s)
    producer.events(evs[:len(evs) // 2])
    producer.joins(joins[:len(joins) // 2])
    producer.events([event("demo", "START", SEED_START, "kafkadown")])
    producer.raw(s.topic_events, b"junk before the outage")
    producer.close()
    for worker in ("events", "sessions", "joins", "deadletters"):
        workers.start(worker, batch_rows=40)
    wait_until(lambda: _checkpoints(s, "sessions") > 0, what="sessions to make progress", workers=workers)
    kafka.stop(s)
    try:
        time.sleep(10)
    finally:
        bring_back(s, "kafka")
    producer = Producer(s)
    producer.events(evs[len(evs) // 2:])
    producer.joins(joins[len(joins) // 2:])
    producer.events([event("demo", "END", SEED_END, "kafkadown")])
    producer.close()
    for worker in ("events", "sessions", "joins"):
        converged(s, worker, workers, timeout_s=120)
    db = ch(s)
    assert wait_until(lambda: db.execute("SELECT count() FROM dead_letters_final"), workers=workers) == [(1,)]
    for worker, topic in (("events", s.topic_events), ("sessions", s.topic_events), ("joins", s.topic_joins),
                          ("deadletters", s.topic_deadletter)):  # and the commits went on after the outage
        group = f"{s.topic_prefix}.{worker}"
        wait_until(lambda: not uncommitted(s, group, topic), what=f"{worker} to commit everything", workers=workers)
    assert all(p.poll() is None for p in workers.procs), "a worker died during the outage"
