"""Consumer throughput: from a pre-filled topic to rows in ClickHouse, one worker process at a time.

A worker's progress is its consumer group's committed offsets (a worker commits only after the rows are in
ClickHouse, SPEC §3.3), polled every 50 ms. The rate is records over the seconds from the moment the group has
its partitions assigned to the last commit: process start-up and the group join are left out (and reported
apart); restoring state, the first fetch and the last flush are in.

Anchor C is ClickHouse's own Kafka table engine (ClickHouse 18.16: ``ENGINE = Kafka(...)`` with JSONEachRow and
a materialized view into a ReplacingMergeTree shaped like ``events``) reading the same events as JSON rows.
Its progress is the row count of the target table. ClickHouse 18.16 makes rows visible in large blocks (multiples
of 65 536 rows), at the latest when its read window (``stream_flush_interval_ms``, 7.5 s) ends. So the anchor
topic holds the benchmark's events four times over (1 048 576 rows at scale 1), enough to keep the engine reading
for most of its windows: the figure is then a rate and not the window timer (with 2 097 152 rows the blocks came
at ~140 000 rows/s, the same as with 1 048 576). At small scales it is a floor.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from eventpipe.settings import Settings

from .harness import BenchError, Processes, app_env, cpu_seconds, python_module, say, status_kb
from .producers import QUIET, DeliveryFailures, confluent_produce

POLL_S = 0.05


def prefill(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Write ``(key, value)`` records with confluent-kafka (Java-compatible partitioner, acks=all); returns
    seconds taken. Blocks; raises BenchError if some were not acknowledged."""
    from confluent_kafka import Producer

    failed = DeliveryFailures()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 20,
                         "batch.size": 1_000_000, "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000}, logger=QUIET)
    t0 = time.monotonic()
    for key, value in records:
        confluent_produce(producer, topic, key, value, failed, 0.05)
    remaining = producer.flush(120)
    if remaining or failed.count:
        raise BenchError(f"pre-filling {topic}: {failed.count} failed, {remaining} not acknowledged")
    return time.monotonic() - t0


class Progress:
    """Observations ``(t, done)`` of a drain, from the moment the consumer had its partitions (``assigned``)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.t_start = time.monotonic()
        self.t_assigned: float | None = None
        self.points: list[tuple[float, int]] = []

    def assigned(self) -> None:
        if self.t_assigned is None:
            self.t_assigned = time.monotonic()

    def observe(self, done: int) -> None:
        if done > 0 and (not self.points or done != self.points[-1][1]):
            self.points.append((time.monotonic(), done))

    @property
    def done(self) -> int:
        return self.points[-1][1] if self.points else 0

    def result(self) -> dict[str, Any]:
        if not self.points:
            return {"rate": 0.0, "done": 0, "total": self.total, "startup_s": None, "elapsed_s": None}
        t_last, done = self.points[-1]
        t_from = self.t_assigned if self.t_assigned is not None else self.t_start
        return {"rate": done / max(1e-9, t_last - t_from), "done": done, "total": self.total,
                "startup_s": t_from - self.t_start, "busy_s": t_last - t_from, "observations": len(self.points),
                "from_assignment": self.t_assigned is not None}


def group_assigned(admin: Any, group: str) -> bool:
    """True once the group is Stable and a member holds partitions."""
    try:
        info = admin.describe_groups([group])[group]
    except Exception:  # the group does not exist yet (error types differ by broker version): not assigned
        return False
    return info.get("group_state") == "Stable" and any(
        m.get("member_assignment", {}).get("assigned_partitions") for m in info.get("members", []))


def committed(admin: Any, group: str) -> int | None:
    """Sum of a group's committed offsets (0 when it has none yet); None when Kafka did not answer this time."""
    from kafka.errors import KafkaError

    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:  # transient (coordinator moving, broker restarting): skip this observation
        return None
    return sum(max(0, o.offset) for o in offsets.values())


def drain_worker(procs: Processes, settings: Settings, worker: str, total: int, timeout_s: float,
                 profile_dir: Path | None = None) -> dict[str, Any]:
    """Start ``python -m consumers WORKER`` on a pre-filled topic and time it until it committed ``total``
    records (or ``timeout_s``). Returns the rate and the worker's CPU seconds and peak RSS. Blocks.

    With ``profile_dir`` the worker runs under pyinstrument, which writes ``consumer-WORKER.txt`` there when the
    worker exits (on the SIGTERM that ends the measurement)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    group = f"{settings.topic_prefix}.{worker}"
    try:
        argv = python_module("consumers", worker)
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            argv = python_module("pyinstrument", "-r", "text", "--no-color", "-i", "0.0005",
                                 "-o", str(profile_dir / f"consumer-{worker}.txt"), "-m", "consumers", worker)
        proc = procs.start(f"consumer-{worker}", argv, app_env(settings, EVENTPIPE_CONSUMER_METRICS_PORT="0"))
        progress = Progress(total)
        cpu = 0.0
        peak_kb = None
        deadline = time.monotonic() + timeout_s
        while progress.done < total and time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise BenchError(f"consumers {worker} exited with {proc.popen.returncode}:\n{proc.tail()}")
            if progress.t_assigned is None and group_assigned(admin, group):
                progress.assigned()
            done = committed(admin, group)
            if done is not None:
                progress.observe(done)
            cpu = cpu_seconds([proc.pid]) or cpu
            peak_kb = status_kb(proc.pid, "VmHWM") or peak_kb
            time.sleep(POLL_S)
        result = progress.result()
        if progress.done < total:
            say(f"consumers {worker}: only {progress.done}/{total} committed after {timeout_s:.0f} s")
        procs.stop(proc)
        result.update(cpu_s=cpu, peak_rss_mb=(peak_kb or 0) / 1024)
        result["per_cpu_s"] = result["done"] / cpu if cpu else None
        return result
    finally:
        admin.close()


def delete_groups(settings: Settings, groups: list[str]) -> None:
    """Forget the committed offsets of ``groups`` (their members are stopped), so a new drain starts over."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})  # kept alive until the futures resolve
    for group, future in admin.delete_consumer_groups(groups, request_timeout=10).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:  # a group that never committed does not exist: nothing to forget
            say(f"deleting consumer group {group}: {exc}")


# --- anchor C: ClickHouse's Kafka engine ------------------------------------------------------------------------
ANCHOR_DDL = """
CREATE TABLE {db}.anchor_events (
    account_id String, event_id String, action Enum8('START' = 1, 'UPDATE' = 2, 'END' = 3), type String,
    event_time DateTime, session Nullable(String), entities Nested(key String, value String),
    received_at DateTime, received_at_ms UInt64, source Enum8('http' = 1, 'kafka' = 2)
) ENGINE = ReplacingMergeTree(received_at_ms) PARTITION BY toYYYYMM(event_time) ORDER BY (account_id, event_id);
CREATE TABLE {db}.anchor_queue (
    account_id String, event_id String, action String, type String, timestamp UInt32, session String,
    has_session UInt8, entity_keys Array(String), entity_values Array(String), received_at_ms UInt64, source String
) ENGINE = Kafka('{bootstrap}', '{topic}', '{group}', 'JSONEachRow');
CREATE MATERIALIZED VIEW {db}.anchor_mv TO {db}.anchor_events AS
SELECT account_id, event_id, CAST(action AS Enum8('START' = 1, 'UPDATE' = 2, 'END' = 3)) AS action, type,
       toDateTime(timestamp) AS event_time, if(has_session = 1, toNullable(session), NULL) AS session,
       entity_keys AS `entities.key`, entity_values AS `entities.value`,
       toDateTime(intDiv(received_at_ms, 1000)) AS received_at, received_at_ms,
       CAST(source AS Enum8('http' = 1, 'kafka' = 2)) AS source
FROM {db}.anchor_queue
"""
ANCHOR_DROP = ("anchor_mv", "anchor_queue")


def json_records(records: list[tuple[bytes, dict[str, Any]]], to_row: Callable[[dict], dict]) -> list[tuple[bytes, bytes]]:
    return [(key, json.dumps(to_row(r), separators=(",", ":")).encode("utf-8")) for key, r in records]


def reset_group_to_start(settings: Settings, group: str, topic: str) -> None:
    """Commit offset 0 on every partition for ``group``, so a consumer that joins it reads the topic from the
    start (ClickHouse 18.16's Kafka engine otherwise starts at the end of an unknown group's partitions)."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.structs import OffsetAndMetadata

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        partitions = admin.describe_topics([topic])[0]["partitions"]
        offsets = {TopicPartition(topic, p["partition_index"]): OffsetAndMetadata(0, "", -1) for p in partitions}
        admin.alter_group_offsets(group, offsets)
    finally:
        admin.close()


def drain_kafka_engine(settings: Settings, topic: str, total: int, timeout_s: float) -> dict[str, Any]:
    """Anchor C: create the Kafka-engine table and its materialized view, time the rows arriving, drop them."""
    from kafka import KafkaAdminClient

    from deploy.migrate import client

    db = f"`{settings.clickhouse_database}`"
    group = f"{topic}.clickhouse"
    reset_group_to_start(settings, group, topic)
    ch = client(settings, settings.clickhouse_database)
    ch_pid = _clickhouse_pid(settings)
    cpu0 = cpu_seconds([ch_pid]) if ch_pid else 0.0
    for statement in ANCHOR_DDL.strip().split(";\n"):
        ch.execute(statement.format(db=db, bootstrap=settings.kafka_bootstrap, topic=topic, group=group))
    progress = Progress(total)
    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        while progress.done < total and time.monotonic() < deadline:
            if progress.t_assigned is None and group_assigned(admin, group):
                progress.assigned()
            progress.observe(ch.execute(f"SELECT count() FROM {db}.anchor_events")[0][0])
            time.sleep(POLL_S)
    finally:
        admin.close()
        cpu = (cpu_seconds([ch_pid]) - cpu0) if ch_pid else None
        # Drop the consumer first so it stops reading (the view, then the Kafka table); the target table goes
        # with the database. (DETACH would leave metadata that makes DROP DATABASE fail on 18.16.)
        for name in ANCHOR_DROP:
            try:
                ch.execute(f"DROP TABLE IF EXISTS {db}.{name}")
            except Exception as exc:  # clean-up only: report and go on
                say(f"anchor C: dropping {name} failed: {exc}")
        ch.disconnect()
    result = progress.result()
    result.update(cpu_s=cpu, per_cpu_s=(result["done"] / cpu) if cpu else None)
    if progress.done < total:
        say(f"anchor C: only {progress.done}/{total} rows after {timeout_s:.0f} s")
    return result


def _clickhouse_pid(settings: Settings) -> int | None:
    from deploy import clickhouse, procs

    return procs.running_pid(clickhouse.service(settings))
