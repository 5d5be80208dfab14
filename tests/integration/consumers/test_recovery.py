"""Recovery of the stateful workers against the real Kafka and ClickHouse: a restarted worker takes its partitions
back at once (static group membership), and a worker that stalls (SIGSTOP), loses its partitions and wakes up
with an unwritten batch cannot move a key backwards (issue 10 §2 — see "Fencing" in consumers/state.py)."""

from __future__ import annotations

import json
import random
import signal
import socket
import time

import pytest

from eventpipe.settings import KAFKA_CLIENTS, Settings

from .conftest import Workers, wait_until
from .test_workers import _stream, converged


def _free_port(s: Settings) -> int:
    """A free port near the configured metrics ports (the engineer's range when EVENTPIPE_CONSUMER_METRICS_PORT
    is set), so the worker can bind it again after a restart."""
    for port in range((s.consumer_metrics_port or 40_000) + 10, (s.consumer_metrics_port or 40_000) + 60):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken: try the next one
                continue
            return port
    pytest.skip("no free port for the worker's metrics")


def _assigned(workers: Workers, proc) -> list[int]:
    """The partitions of the last ``partitions assigned`` line in the worker's log ([] before any)."""
    lines = [json.loads(line) for line in workers.log_of(proc).splitlines()
             if line.startswith("{") and '"partitions assigned"' in line]
    return lines[-1]["partitions"] if lines else []


@pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)
def test_a_restarted_worker_takes_its_partitions_back_before_its_old_session_expires(
        isolated_settings: Settings, workers: Workers, kafka_client: str) -> None:
    s = isolated_settings
    port = _free_port(s)
    # a session far longer than the wait below: with dynamic membership the restarted worker would get nothing
    # until the killed one's session expired
    opts = dict(consumer_metrics_port=port, consumer_session_timeout_ms=90_000, kafka_client=kafka_client)
    first = workers.start("sessions", **opts)
    wait_until(lambda: workers.log_of(first).count("partition restored") == s.topic_partitions,
               what="the worker to own every partition", workers=workers)
    assert f'"instance_id": "{socket.gethostname()}:{port}"' in workers.log_of(first)
    stream = _stream(s, random.Random(3), chunks=4, pause_s=0.2)
    stream.join(60)
    assert workers.kill(first, signal.SIGKILL) == -signal.SIGKILL
    again = workers.start("sessions", **opts)
    wait_until(lambda: workers.log_of(again).count("partition restored") == s.topic_partitions, timeout_s=45,
               what="the restarted worker to get its partitions back", workers=workers)
    converged(s, "sessions", workers)


@pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)
def test_a_worker_stopped_mid_batch_that_wakes_up_after_losing_its_partitions_moves_no_key_backwards(
        isolated_settings: Settings, workers: Workers, kafka_client: str) -> None:
    s = isolated_settings
    rng = random.Random(17)
    # The sleeper reads into a batch it writes only after 30 s (or on a rebalance); the other flushes every 0.2 s.
    sleepy = dict(batch_seconds=30.0, batch_rows=1_000_000, kafka_client=kafka_client)
    brisk = dict(batch_rows=25, kafka_client=kafka_client)
    for worker in ("sessions", "joins"):
        sleeper = workers.start(worker, **sleepy)
        wait_until(lambda: workers.log_of(sleeper).count("partition restored") == s.topic_partitions,
                   what=f"{worker}: the first instance to own every partition", workers=workers)
        other = workers.start(worker, **brisk)
        wait_until(lambda: _assigned(workers, other) and _assigned(workers, sleeper)
                   and workers.log_of(other).count("partition restored") >= len(_assigned(workers, other)),
                   what=f"{worker}: the partitions split between the two", workers=workers)
        stream = _stream(s, rng, chunks=12, pause_s=0.5)
        time.sleep(rng.uniform(2.0, 3.0))  # the sleeper holds part of the stream in its unwritten batch
        sleeper.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            wait_until(lambda: len(_assigned(workers, other)) == s.topic_partitions, timeout_s=60,
                       what=f"{worker}: the other instance to take every partition", workers=workers)
            stream.join(60)
            converged(s, worker, workers)
            time.sleep(max(0.0, 31.0 - (time.monotonic() - stopped_at)))  # the sleeper's batch is due on waking
        finally:
            sleeper.send_signal(signal.SIGCONT)
        # It wakes mid-step with its batch due: it writes rows and state for offsets the other instance has long
        # passed, then the commit is refused (a commit comes only after the batch's state is written). That stale
        # write must change nothing. (Counting checkpoint rows would not show it: merges collapse them.)
        wait_until(lambda: "commit refused after a rebalance" in workers.log_of(sleeper), timeout_s=60,
                   what=f"{worker}: the woken instance to write its stale batch", workers=workers)
        converged(s, worker, workers)
        # What a new owner restores must be the latest state too: only a fresh instance remains, and a second
        # wave continues the same sessions and join groups.
        assert workers.kill(sleeper, signal.SIGKILL) == -signal.SIGKILL
        assert workers.kill(other, signal.SIGKILL) == -signal.SIGKILL
        workers.start(worker, **brisk)
        wave = _stream(s, random.Random(rng.random()), chunks=4, pause_s=0.2)
        wave.join(60)
        converged(s, worker, workers)
