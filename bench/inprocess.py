"""In-process cost of each worker's per-record path, stage by stage (no Kafka; a real ClickHouse insert).

``python -m bench.inprocess [--scale S] [--workers events,sessions,joins] [--cprofile N]`` feeds the real
processors (``consumers/processors.py``) with the benchmark workload's records (``bench/workload.py``, the same
seed as ``make bench``) framed as Kafka would deliver them (Java's murmur2 partitioner over 6 partitions,
offsets per partition, polls of ``POLL_RECORDS``), batches their outcomes as the worker loop does
(``consumers/batch.py``, ``EVENTPIPE_BATCH_ROWS`` records per batch) and inserts every batch into a scratch
ClickHouse database (created, migrated and dropped here; ``EVENTPIPE_CLICKHOUSE_HOST`` selects the server).

Printed per worker, in CPU µs per record of this process (``time.process_time``, less noisy than wall time on a
shared machine): ``decode`` and ``check`` alone (the codec and ``consumers/rules.py`` on every record),
``handle`` (the processor's whole per-record path: decode, check, state machine, row), ``batch`` (``Batch.add``
and ``Batch.rows``), ``insert`` (this process's side of the ClickHouse INSERTs — encoding and sending the
blocks — and, for the stateful workers, of the state writes) and ``in-process`` (handle + batch + insert: what
a worker spends per record besides its Kafka client). ``--cprofile N`` also prints the N functions with the
most own time under cProfile (which slows everything it profiles; its figures are for proportions only).

Blocks on ClickHouse; exits 1 if it cannot reach it.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from eventpipe.settings import Settings

from .harness import BenchConfig, replace
from .workload import Workload, WorkloadConfig

PARTITIONS = 6
POLL_RECORDS = 500  # records per poll handed to the processor (prepare → handle), as a worker's fetch


@dataclass
class Feed:
    """One worker's input: the records as the worker's source would hand them over, in polls."""

    messages: list[Any]  # consumers.processors.Message
    polls: list[list[Any]]


def feed(topic: str, records: list[tuple[bytes, bytes]]) -> Feed:
    """``(key, frame)`` records as Messages: partitioned by Java's murmur2 of the key, offsets per partition,
    interleaved across partitions in polls of ``POLL_RECORDS`` (a poll of one partition's records at a time)."""
    from kafka.partitioner.default import murmur2

    from consumers.processors import Message

    per_partition: list[list[Any]] = [[] for _ in range(PARTITIONS)]
    for key, frame in records:
        p = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        per_partition[p].append(Message(topic, p, len(per_partition[p]), 1_763_900_000_000, frame))
    polls = [part[i:i + POLL_RECORDS] for part in per_partition for i in range(0, len(part), POLL_RECORDS)]
    polls.sort(key=lambda poll: (poll[0].offset, poll[0].partition))  # round-robin, as a fetch over partitions
    return Feed([m for poll in polls for m in poll], polls)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.process_time()
    value = fn()
    return time.process_time() - t0, value


def measure(settings: Settings, worker: str, data: Feed, decode: Callable[[bytes], Any],
            check: Callable[[Any], Any], profile: int) -> dict[str, float]:
    """CPU seconds of each stage over every record of ``data``, for ``worker``'s processor. Blocks on ClickHouse."""
    from consumers.batch import Batch
    from consumers.clickhouse_io import ClickHouseStore
    from consumers.processors import WORKERS
    from consumers.state import Checkpoint, Restored

    out = dict.fromkeys(("decode", "check", "handle", "batch", "insert"), 0.0)
    proc = WORKERS[worker](settings)
    for p in range(PARTITIONS):
        proc.assign(p, Restored(checkpoint=None, states=()))
    store = ClickHouseStore(settings)
    profiler = cProfile.Profile() if profile else None

    def flush(batch: Batch) -> None:
        rows = batch.rows()
        if rows:
            store.insert(proc.table, proc.columns, rows)
        if proc.stateful:
            changes = [(p, key, *value) for (p, key), value in batch.states.items()]
            checkpoints = {p: Checkpoint(proc.watermark(p), n) for p, n in batch.next_offset.items()}
            store.write_state(f"inprocess.{worker}", proc.topic, changes,
                              {p: c.encode() for p, c in checkpoints.items()},
                              {p: c.next_offset for p, c in checkpoints.items()})

    def handle(poll: list[Any]) -> list[Any]:
        for partition, keys in proc.prepare(poll).items():
            proc.recall(partition, keys, [])  # looked up: no tombstones (a fresh topic has none)
        return [proc.handle(m) for m in poll]

    def add(batch: Batch, poll: list[Any], outcomes: list[Any]) -> None:
        for message, outcome in zip(poll, outcomes):
            batch.add(message, outcome, 0.0)

    # Poll by poll, keeping no more than a worker keeps: holding decoded records would make the garbage
    # collector's passes, and so every stage, dearer than in a worker.
    batch = Batch()
    try:
        for poll in data.polls:
            # each record decoded (and checked) then dropped, as in a worker: check = (decode + check) - decode
            decoding = timed(lambda: [None for m in poll if decode(m.value) is None])[0]
            out["decode"] += decoding
            out["check"] += timed(lambda: [None for m in poll if check(decode(m.value))])[0] - decoding
            if profiler:
                profiler.enable()
            seconds, outcomes = timed(lambda: handle(poll))
            out["handle"] += seconds
            out["batch"] += timed(lambda: add(batch, poll, outcomes))[0]
            if batch.records >= settings.batch_rows or poll is data.polls[-1]:
                out["insert"] += timed(lambda: flush(batch))[0]
                batch = Batch()
            if profiler:
                profiler.disable()
    finally:
        store.close()
    if profiler:
        print(f"\ncProfile of {worker} (handle, batch, insert), top {profile} by own time:")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(profile)
    out["in-process"] = out["handle"] + out["batch"] + out["insert"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.5, help="workload size as in make bench (default 0.5)")
    parser.add_argument("--workers", default="events,sessions,joins")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print cProfile's top N")
    args = parser.parse_args(argv)

    from consumers.__main__ import memory_policy
    from deploy.migrate import drop_database, migrate
    from consumers import rules
    from eventpipe.codec import EVENT, JOIN_RECORD

    cfg = BenchConfig(scale=args.scale)
    base = Settings.from_env()
    settings = replace(base, clickhouse_database=f"inprocess_{uuid.uuid4().hex[:8]}")
    workload = Workload(WorkloadConfig(seed=cfg.seed))
    events = [(k, EVENT.encode(v))
              for k, v in workload.event_records(workload.events(cfg.count(cfg.sink_events, 2_000)))]
    joins = [(k, JOIN_RECORD.encode(v))
             for k, v in workload.join_records(workload.joins(cfg.count(cfg.sink_joins, 500)))]
    types = rules.load_event_types(settings.event_types_file)
    check_event = lambda e: rules.check_event(e, types, settings.max_future_s)  # noqa: E731
    check_join = lambda r: rules.check_join_record(r, settings.max_future_s)  # noqa: E731
    plan = {"events": (settings.topic_events, events, EVENT.decode, check_event),
            "sessions": (settings.topic_events, events, EVENT.decode, check_event),
            "joins": (settings.topic_joins, joins, JOIN_RECORD.decode, check_join)}
    memory_policy()  # the workers' memory policy (garbage collector, glibc)
    try:
        migrate(settings)
    except Exception as exc:  # transient or operator error: no ClickHouse to insert into
        print(f"bench.inprocess: cannot migrate a scratch database: {exc}", file=sys.stderr)
        return 1
    try:
        stages = ("decode", "check", "handle", "batch", "insert", "in-process")
        print(f"CPU µs per record (scale {cfg.scale}, batches of {settings.batch_rows}, polls of {POLL_RECORDS})")
        print("| worker | records | " + " | ".join(stages) + " | records per CPU-s (in-process) |")
        print("|---|---:|" + "---:|" * (len(stages) + 1))
        for worker in [w.strip() for w in args.workers.split(",") if w.strip()]:
            topic, records, decode, check = plan[worker]
            data = feed(topic, records)
            # The feed (every record at once) is the harness's, not the worker's: keep it out of the garbage
            # collector's passes, which would otherwise traverse it and bill every stage for it.
            gc.freeze()
            result = measure(settings, worker, data, decode, check, args.cprofile)
            del data
            gc.unfreeze()
            n = len(records)
            print(f"| {worker} | {n} | " + " | ".join(f"{result[s] / n * 1e6:.1f}" for s in stages)
                  + f" | {n / result['in-process']:,.0f} |", flush=True)
    finally:
        drop_database(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
