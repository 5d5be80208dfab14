"""The four workers as real processes against the real Kafka and ClickHouse.

Each test gets fresh topics and a fresh database (``isolated_settings``), produces Avro with the codec straight to
the topics, runs ``python -m consumers WORKER`` subprocesses, and compares the ``*_final`` views with the plain
reference of ``streams.py`` (one uninterrupted in-process pass over the same topic).
"""

from __future__ import annotations

import base64
import json
import random
import re
import signal
import threading
import time
import urllib.request

import pytest

from deploy.migrate import client
from eventpipe.settings import KAFKA_CLIENTS, Settings

from .conftest import Workers, bring_back, wait_until
from .streams import (SEED_END, SEED_START, Producer, event, final_rows, join_record, random_events,
                      random_joins, reference_rows)


def ch(settings: Settings):
    return client(settings, settings.clickhouse_database)


def converged(settings: Settings, worker: str, workers: Workers, timeout_s: float = 120.0) -> None:
    """Wait until ``worker``'s final view equals the reference; fail with a diff summary otherwise."""
    expected = reference_rows(settings, worker)
    db = ch(settings)
    got: list = []

    def same() -> bool:
        nonlocal got
        got = final_rows(db, worker)
        return got == expected

    assert len(expected) >= 2, f"{worker}: the reference has too few rows to prove anything"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if same():
            return
        time.sleep(0.5)
    missing = [r for r in expected if r not in got][:5]
    extra = [r for r in got if r not in expected][:5]
    pytest.fail(f"{worker}: {len(got)} rows vs {len(expected)} expected; missing {missing}; extra {extra}\n"
                f"{workers.logs()}")


# --- end to end ----------------------------------------------------------------------------------------------
def test_seed_session_join_and_dead_letter_end_to_end(isolated_settings: Settings, workers: Workers) -> None:
    s = isolated_settings
    producer = Producer(s)
    producer.events([event("demo", "START", SEED_START, "8nc92io9q", event_id="seed-start"),
                     event("demo", "END", SEED_END, "8nc92io9q", event_id="seed-end")])
    seed = join_record("demo", 1_462_058_743_511, event_id="6f9619ff-8b86-d011-b42d-00cf4fc964ff", count=1,
                       message="Event message")
    extension = join_record("demo", 1_462_058_743_511 + 120_000, event_id="6f9619ff-8b86-d011-b42d-00cf4fc964ff",
                            count=4, message="again")
    producer.joins([seed, extension])
    producer.raw(s.topic_events, b"\x00not avro at all")
    producer.events([event("demo", "END", SEED_END, None, event_id="rule-breaker")])  # END needs a session
    producer.joins([join_record("demo", 1_462_058_743_511, component="not-a-guid")])
    producer.close()
    procs = {worker: workers.start(worker) for worker in ("events", "sessions", "joins", "deadletters")}
    events_proc = procs["events"]
    db = ch(s)

    sessions = wait_until(lambda: db.execute(
        "SELECT status, toUnixTimestamp(start_time), toUnixTimestamp(end_time), duration_s, update_count "
        "FROM sessions_final WHERE account_id = 'demo' AND session = '8nc92io9q' AND status = 'closed'"),
        what="the closed seed session", workers=workers)
    assert sessions == [("closed", SEED_START, SEED_END, 106, 0)]
    events = wait_until(lambda: db.execute(
        "SELECT event_id, toString(action), toUnixTimestamp(event_time), entities.key, entities.value "
        "FROM events_final ORDER BY event_time"), what="the seed events", workers=workers)
    assert events == [("seed-start", "START", SEED_START, ["app", "package"], ["BigBrother", "de.thues.bigbrother"]),
                      ("seed-end", "END", SEED_END, ["app", "package"], ["BigBrother", "de.thues.bigbrother"])]
    joined = wait_until(lambda: db.execute(
        "SELECT event_id, count, records, message, start_time_ms, end_time_ms, toString(importance) "
        "FROM joined_events_final WHERE records = 2"), what="the joined seed event", workers=workers)
    assert joined == [("6f9619ff-8b86-d011-b42d-00cf4fc964ff", 5, 2, "again", 1_462_058_743_511,
                       1_462_058_743_511 + 120_000, "Alarm")]
    assert db.execute("SELECT count() FROM joined_events_final") == [(1,)]
    letters = wait_until(lambda: len(rows := db.execute(
        "SELECT source, topic, partition, offset, account_id, reason, payload FROM dead_letters_final "
        "ORDER BY reason")) == 3 and rows, what="three dead_letters rows", workers=workers)
    undecodable = [row for row in letters if row[4] is None]
    assert len(undecodable) == 1
    source, topic, partition, offset, _, reason, payload = undecodable[0]
    assert (source, topic) == ("kafka", s.topic_events) and partition >= 0 and offset >= 0
    assert "not an Avro single-object frame" in reason
    assert base64.b64decode(payload) == b"\x00not avro at all"
    assert sorted((row[1], row[4], row[5]) for row in letters if row[4] is not None) == sorted([
        (s.topic_joins, "demo", "component_id: not a lower-case GUID"),
        (s.topic_events, "demo", "session: required for END")])
    assert db.execute("SELECT count() FROM events_final") == [(2,)]

    text = scrape_metrics(workers, events_proc)
    assert 'eventpipe_consumer_records_total{outcome="dead_letter",worker="events"} 2.0' in text
    assert 'eventpipe_consumer_records_total{outcome="written",worker="events"} 2.0' in text
    assert 'eventpipe_consumer_dead_letters_total{reason="not an Avro single-object frame (expected C3 01 then an ' \
           '8-byte fingerprint)",worker="events"} 1.0' in text
    assert re.search(rf'eventpipe_consumer_lag{{partition="\d",topic="{re.escape(s.topic_events)}",worker="events"}} 0.0',
                     text)
    assert "eventpipe_consumer_insert_seconds_count" in text and "eventpipe_consumer_batch_records_count" in text
    assert 'eventpipe_consumer_open_keys{worker="joins"} 1.0' in scrape_metrics(workers, procs["joins"])


def scrape_metrics(workers: Workers, proc) -> str:
    line = next(line for line in workers.log_of(proc).splitlines() if "metrics listening" in line)
    port = json.loads(line)["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


# --- determinism -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_rows", [7, 10_000])
def test_batch_sizes_and_duplicates_give_the_reference_rows(isolated_settings: Settings, workers: Workers,
                                                            batch_rows: int) -> None:
    s = isolated_settings
    rng = random.Random(20261123)
    producer = Producer(s)
    producer.events(random_events(rng, 300))
    producer.joins(random_joins(rng, 300))
    producer.close()
    for worker in ("events", "sessions", "joins"):
        workers.start(worker, batch_rows=batch_rows)
    for worker in ("events", "sessions", "joins"):
        converged(s, worker, workers)


# --- crashes ------------------------------------------------------------------------------------------------------
def _stream(s: Settings, rng: random.Random, chunks: int = 10, pause_s: float = 0.5) -> threading.Thread:
    """Produce events and join records in chunks, in the background, while the workers run."""
    evs, joins = random_events(rng, 400), random_joins(rng, 400)

    def run() -> None:
        producer = Producer(s)
        for i in range(chunks):
            producer.events(evs[i * len(evs) // chunks:(i + 1) * len(evs) // chunks])
            producer.joins(joins[i * len(joins) // chunks:(i + 1) * len(joins) // chunks])
            time.sleep(pause_s)
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _checkpoints(s: Settings, worker: str) -> int:
    """How many checkpoints ``worker``'s group has written so far (a measure of its progress)."""
    return ch(s).execute("SELECT count() FROM consumer_state WHERE consumer_group = %(g)s AND key = ''",
                         {"g": f"{s.topic_prefix}.{worker}"})[0][0]


def _kill_after_progress(s: Settings, workers: Workers, worker: str, proc, rng: random.Random,
                         stream: threading.Thread) -> None:
    """Wait until ``worker`` has written a new checkpoint (or the stream is over: there may be nothing left to
    progress on, and a crash when idle is a crash point too), then kill -9 it a random moment later."""
    seen = _checkpoints(s, worker)
    wait_until(lambda: _checkpoints(s, worker) > seen or not stream.is_alive(), what=f"{worker} to make progress",
               workers=workers)
    time.sleep(rng.uniform(0.0, 0.4))
    assert workers.kill(proc, signal.SIGKILL) == -signal.SIGKILL


@pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)
def test_kill_9_at_random_points_gives_the_uninterrupted_result(isolated_settings: Settings, workers: Workers,
                                                                kafka_client: str) -> None:
    s = isolated_settings
    rng = random.Random(7)
    procs = {w: workers.start(w, batch_rows=25, kafka_client=kafka_client) for w in ("sessions", "joins")}
    stream = _stream(s, rng, chunks=12, pause_s=1.0)
    for _ in range(3):
        for worker in procs:
            _kill_after_progress(s, workers, worker, procs[worker], rng, stream)
            procs[worker] = workers.start(worker, batch_rows=25, kafka_client=kafka_client)
    stream.join(60)
    assert stream.is_alive() is False
    converged(s, "sessions", workers)
    converged(s, "joins", workers)


@pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)
def test_two_instances_one_killed_gives_the_same_result(isolated_settings: Settings, workers: Workers,
                                                        kafka_client: str) -> None:
    s = isolated_settings
    rng = random.Random(11)
    pairs = {w: [workers.start(w, batch_rows=25, kafka_client=kafka_client),
                 workers.start(w, batch_rows=25, kafka_client=kafka_client)] for w in ("sessions", "joins")}
    stream = _stream(s, rng, chunks=12, pause_s=0.7)
    for worker, (first, _second) in pairs.items():
        _kill_after_progress(s, workers, worker, first, rng, stream)
    stream.join(60)
    converged(s, "sessions", workers)
    converged(s, "joins", workers)


@pytest.mark.slow
def test_clickhouse_outage_mid_stream_loses_and_doubles_nothing(isolated_settings: Settings,
                                                                workers: Workers) -> None:
    from deploy import clickhouse

    s = isolated_settings
    rng = random.Random(13)
    for worker in ("events", "sessions", "joins"):
        workers.start(worker, batch_rows=40)
    stream = _stream(s, rng, chunks=12, pause_s=0.5)
    time.sleep(2.0)
    clickhouse.stop(s)
    try:
        time.sleep(30)
    finally:
        bring_back(s, "clickhouse")
    stream.join(60)
    for worker in ("events", "sessions", "joins"):
        converged(s, worker, workers, timeout_s=90)
    assert all(p.poll() is None for p in workers.procs), "a worker died during the outage"


@pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)
def test_sigterm_flushes_commits_and_exits_zero(isolated_settings: Settings, workers: Workers,
                                                kafka_client: str) -> None:
    s = isolated_settings
    producer = Producer(s)
    producer.events([event("demo", "START", SEED_START, "sigterm01")])
    producer.close()
    proc = workers.start("sessions", batch_seconds=30.0, kafka_client=kafka_client)  # nothing would be written before SIGTERM but for it
    db = ch(s)
    wait_until(lambda: workers.log_of(proc).count("partition restored") == s.topic_partitions,
               what="the worker to own every partition", workers=workers)
    time.sleep(2.0)  # it reads the event into its batch, which is not due for 30 s
    assert db.execute("SELECT count() FROM sessions_final") == [(0,)]
    assert workers.kill(proc, signal.SIGTERM) == 0
    assert db.execute("SELECT status FROM sessions_final WHERE session = 'sigterm01'") == [("open",)]
