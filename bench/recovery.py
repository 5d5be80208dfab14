"""Memory and recovery of the real stateful workers holding many open keys (issue 16).

For the sessions worker (N open sessions: N START events, no END, all within the session timeout) and the joins
worker (N open join windows: N records with distinct join keys, all within the retention):

1. the records are produced straight to the worker's topic, then ``python -m consumers WORKER`` starts and
   catches up (its group's committed offsets reach N); its peak RSS (VmHWM) is then the "holding N keys" figure;
2. ``kill -9`` of it, a few probe records produced, and the same worker started again at once with the same
   settings (and the same metrics port, which is what its static group identity is made of, see
   ``consumers/__main__.py``). From the restart: **assignment** = its log's ``partitions assigned``, **restored**
   = its last ``partition restored``, **consuming** = its group's commits cover the probe records (so one batch
   flush is included). The restarted process's peak RSS is reported too (restore-time objects count there).

The worker's logs are read at INFO for the two lines above (their timestamps are wall clock, ms resolution).
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from eventpipe.settings import Settings

from .harness import BenchError, Processes, app_env, free_port, python_module, say, status_kb
from .sinks import committed, prefill

PROBES = 60           # records produced after the kill: the restarted worker must commit them
BASE_TS = 1_763_900_000
ACCOUNT = "bench-recovery"
TYPE_ID = "00000000-0000-4000-8000-00000000beef"


def session_frames(n: int, first: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """N START events of distinct sessions, 50 per event-time second (all open: the span is far below 24 h)."""
    from eventpipe.codec import EVENT

    for i in range(first, first + n):
        session = f"s{i:011d}"
        yield (f"{ACCOUNT}|{session}|APPSTART".encode(), EVENT.encode({
            "account_id": ACCOUNT, "event_id": f"{i:032x}", "action": "START", "type": "APPSTART",
            "timestamp": BASE_TS + i // 50, "session": session, "entities": [], "received_at": (BASE_TS + i // 50) * 1000,
            "source": "kafka"}))


def join_frames(n: int, first: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """N join records with distinct join keys (so N joined events stay open), over 64 components (partitions),
    1 ms apart in event time (far within the 25 h retention)."""
    from eventpipe.codec import JOIN_RECORD

    for i in range(first, first + n):
        component = f"00000000-0000-4000-8000-{i % 64:012x}"
        yield (json.dumps([ACCOUNT, component, TYPE_ID], separators=(",", ":")).encode(), JOIN_RECORD.encode({
            "account_id": ACCOUNT, "record_id": f"{i:032x}", "event_id": None, "component_id": component,
            "type_id": TYPE_ID, "join_key": i, "start_date": BASE_TS * 1000 + i, "join_interval": 600.0,
            "importance": "Alarm", "count": 1, "message": "m", "version": None, "received_at": BASE_TS * 1000,
            "source": "kafka"}))


FRAMES = {"sessions": session_frames, "joins": join_frames}


def _log_lines(log: Path, since: int, message: str) -> list[tuple[float, dict]]:
    """``(wall-clock time, entry)`` of the log lines with ``msg == message`` written after byte ``since``."""
    out = []
    with open(log, "rb") as f:
        f.seek(since)
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:  # a line that is not ours (a library printing to stderr)
                continue
            if entry.get("msg") == message:
                out.append((datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                            .replace(tzinfo=timezone.utc).timestamp(), entry))
    return out


def _wait_committed(admin: Any, group: str, total: int, proc: Any, timeout_s: float,
                    peak: list[int]) -> float | None:
    """Wait until ``group`` committed ``total`` records; track the peak RSS in ``peak[0]``. Returns the wall
    time it happened, or None at the timeout. Raises BenchError when the worker exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(f"the worker exited with {proc.popen.returncode}:\n{proc.tail()}")
        peak[0] = max(peak[0], status_kb(proc.pid, "VmHWM") or 0)
        if (committed(admin, group) or 0) >= total:
            return time.time()
        time.sleep(0.05)
    return None


def measure(procs: Processes, settings: Settings, worker: str, n: int, timeout_s: float) -> dict[str, Any]:
    """One worker: catch up on N records, kill -9, restart; returns RSS and the restart's timings. Blocks."""
    from kafka import KafkaAdminClient

    topic = settings.topic_events if worker == "sessions" else settings.topic_joins
    t0 = time.monotonic()
    seconds = prefill(settings, topic, FRAMES[worker](n))
    say(f"recovery/{worker}: produced {n} records in {seconds:.1f} s")
    group = f"{settings.topic_prefix}.{worker}"
    # a fixed port, as under `make run` (a free one, so as not to meet a running stack's): the restarted worker
    # binds it again, and so joins with the same static group identity
    env = app_env(settings, EVENTPIPE_CONSUMER_METRICS_PORT=str(free_port()), EVENTPIPE_LOG_LEVEL="INFO")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        proc = procs.start(f"recovery-{worker}", python_module("consumers", worker), env)
        peak = [0]
        started = time.time()
        if _wait_committed(admin, group, n, proc, timeout_s, peak) is None:
            raise BenchError(f"{worker}: {committed(admin, group)}/{n} committed after {timeout_s:.0f} s")
        caught_up_s = time.time() - started
        rss_kb = status_kb(proc.pid, "VmRSS") or 0
        say(f"recovery/{worker}: caught up on {n} in {caught_up_s:.1f} s, peak RSS {peak[0] / 1024:.0f} MB")
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)
        procs.procs.remove(proc)
        prefill(settings, topic, FRAMES[worker](PROBES, first=n))
        since = proc.log.stat().st_size
        restarted = time.time()
        again = procs.start(f"recovery-{worker}", python_module("consumers", worker), env)
        peak2 = [0]
        consuming = _wait_committed(admin, group, n + PROBES, again, timeout_s, peak2)
        if consuming is None:
            raise BenchError(f"{worker}: the restarted worker did not commit the probes in {timeout_s:.0f} s")
        assigned = [t for t, _ in _log_lines(again.log, since, "partitions assigned")]
        restored = _log_lines(again.log, since, "partition restored")
        procs.stop(again)
    finally:
        admin.close()
    keys = sum(entry.get("keys", 0) for _, entry in restored)
    if worker == "sessions" and keys != n or worker == "joins" and keys < n:  # a joined event may hold chunks too
        raise BenchError(f"{worker}: the restarted worker restored {keys} keys, not the {n} it was given")
    result = {
        "open_keys": n, "caught_up_s": caught_up_s, "peak_rss_mb": peak[0] / 1024, "rss_mb": rss_kb / 1024,
        "restart_peak_rss_mb": peak2[0] / 1024,
        "assignment_s": (assigned[-1] - restarted) if assigned else None,
        "restore_s": (max(t for t, _ in restored) - assigned[-1]) if assigned and restored else None,
        "consuming_s": consuming - restarted, "phase_s": time.monotonic() - t0}
    say(f"recovery/{worker}: back consuming {result['consuming_s']:.1f} s after the restart (assignment "
        f"{result['assignment_s'] or 0:.1f} s, restore {result['restore_s'] or 0:.1f} s), restarted peak RSS "
        f"{result['restart_peak_rss_mb']:.0f} MB")
    return result
