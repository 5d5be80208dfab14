"""End-to-end latency: from the HTTP 200 of the batch carrying a session's END to the session's ``closed`` row
being visible in ``sessions_final``, with the gateway paced at a given rate and the events and sessions workers
consuming as under ``make run``.

The paced load runs in a thread of this process (a few hundred requests a second at most); the main thread asks
ClickHouse every ``POLL_S`` which of the sessions acknowledged so far are visible. A latency is the time of the
query that first saw the row minus the time the 200 arrived, so it overstates by up to one poll interval (plus
the query's own time), which the report states.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from eventpipe.settings import Settings

from . import loadgen
from .gateway import Gateway
from .harness import BenchConfig, BenchError, Processes, app_env, percentile, python_module, say, wait_for
from .workload import Workload, batches

POLL_S = 0.1
DRAIN_S = 30.0  # after the load, how long to wait for the last sessions to show


class Pipeline:
    """The gateway with the events and sessions workers, as under ``make run``, warmed up by one session."""

    def __init__(self, procs: Processes, settings: Settings, home: Path, workload: Workload, name: str) -> None:
        from deploy.migrate import client

        self.settings = settings
        self.db = f"`{settings.clickhouse_database}`"
        env = app_env(settings, EVENTPIPE_CONSUMER_METRICS_PORT="0")
        self.workers = [procs.start(f"{name}-consumer-{w}", python_module("consumers", w), env)
                        for w in ("events", "sessions")]
        self.gateway = Gateway(procs, settings, home, name=f"gateway-{name}")
        self.ch = client(settings, settings.clickhouse_database)
        # Warm-up: one session through the whole pipeline (group joins, producers connected, first inserts).
        warm = [{"action": "START", "type": "APPSTART", "timestamp": workload.config.base_timestamp,
                 "session": "warmup-0001", "entities": []},
                {"action": "END", "type": "APPSTART", "timestamp": workload.config.base_timestamp + 1,
                 "session": "warmup-0001", "entities": []}]
        loadgen.run(self.gateway.url, self.gateway.key, [loadgen.encode_body(warm)], connections=1, duration_s=10,
                    max_requests=1)
        for w in self.workers:
            if w.popen.poll() is not None:
                raise BenchError(f"{w.name} exited with {w.popen.returncode}:\n{w.tail()}")
        self.warmup_s = wait_for(lambda: bool(self.closed(["warmup-0001"])), 120, "end-to-end warm-up session")

    def closed(self, sessions: list[str]) -> set[str]:
        rows = self.ch.execute(f"SELECT session FROM {self.db}.sessions_final WHERE status = 'closed' "
                               "AND session IN %(s)s", {"s": tuple(sessions)})
        return {r[0] for r in rows}


def pipeline_max(cfg: BenchConfig, procs: Processes, settings: Settings, home: Path, workload: Workload
                 ) -> dict[str, Any]:
    """The whole pipeline's maximum: closed-loop load on the gateway while both workers consume on the same
    machine, then the time until the slower worker has committed every event the gateway acknowledged; the rate
    is those events over that time (the gateway's and each worker's own rates are reported beside it). Blocks."""
    from kafka import KafkaAdminClient

    from .sinks import committed

    pipe = Pipeline(procs, settings, home, workload, "max")
    duration = cfg.seconds(cfg.e2e_seconds / 2, minimum=3.0)
    chunks = batches(workload.events(cfg.count(60_000, 1_000) // cfg.batch_size * cfg.batch_size, stream="max"),
                     cfg.batch_size)
    bodies = [loadgen.encode_body(c) for c in chunks]
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    groups = [f"{settings.topic_prefix}.{w}" for w in ("events", "sessions")]
    done_at: dict[str, float] = {}
    try:
        before = {g: committed(admin, g) or 0 for g in groups}
        t0 = time.monotonic()
        result = loadgen.run(pipe.gateway.url, pipe.gateway.key, bodies, connections=cfg.load_threads * 2,
                             duration_s=duration)
        acked = result["ok"] * cfg.batch_size
        deadline = time.monotonic() + DRAIN_S * 2
        while len(done_at) < len(groups) and time.monotonic() < deadline:
            for g in groups:
                if g not in done_at and (committed(admin, g) or 0) - before[g] >= acked:
                    done_at[g] = time.monotonic() - t0
            time.sleep(POLL_S)
    finally:
        admin.close()
        pipe.ch.disconnect()
    if len(done_at) < len(groups):
        raise BenchError(f"the workers did not commit the {acked} acknowledged events within {DRAIN_S * 2:.0f} s "
                         "of the load's end")
    gateway_rate = acked / result["wall_s"]
    events_rate, sessions_rate = (acked / done_at[g] for g in groups)
    return {"events_per_s": min(events_rate, sessions_rate), "gateway_events_per_s": gateway_rate,
            "events_sink_per_s": events_rate, "sessions_per_s": sessions_rate, "events": acked,
            "load_s": result["wall_s"], "errors": result.get("errors", {})}


def run(cfg: BenchConfig, procs: Processes, settings: Settings, home: Path, workload: Workload,
        rate_events: float) -> dict[str, Any]:
    """Pace the gateway at ``rate_events`` events/s for ``cfg.e2e_seconds``; measure the latency. Blocks."""
    pipe = Pipeline(procs, settings, home, workload, "e2e")
    gateway, closed, ch, waited = pipe.gateway, pipe.closed, pipe.ch, pipe.warmup_s

    duration = cfg.seconds(cfg.e2e_seconds, minimum=3.0)
    req_rate = max(1.0, rate_events / cfg.batch_size)
    n_batches = int(math.ceil(req_rate * duration))
    chunks = batches(workload.events(n_batches * cfg.batch_size, stream="e2e"), cfg.batch_size)
    probes: dict[int, list[str]] = {}
    for i, chunk in enumerate(chunks):
        ends = [e["session"] for e in chunk if e["action"] == "END"]
        if ends:
            probes[i] = ends
    bodies = [loadgen.encode_body(c) for c in chunks]

    lock = threading.Lock()
    pending: dict[str, float] = {}
    acked = [0]

    def on_done(index: int, status: int, at: float) -> None:
        if status == 200:
            with lock:
                acked[0] += 1
                for s in probes.get(index, ()):
                    pending[s] = at

    result: dict[str, Any] = {}
    load = threading.Thread(target=lambda: result.update(loadgen.run(
        gateway.url, gateway.key, bodies, connections=8, duration_s=duration + 5, rate=req_rate,
        max_requests=len(bodies), on_done=on_done)), daemon=True)
    latencies: list[float] = []
    t_start = time.monotonic()
    load.start()
    drain_until = None
    while True:
        with lock:
            waiting = list(pending)[:2000]
        if waiting:
            asked_at = time.time()
            seen = closed(waiting)
            with lock:
                for s in seen:
                    latencies.append(asked_at - pending.pop(s))
        if not load.is_alive():
            drain_until = drain_until or time.monotonic() + DRAIN_S
            with lock:
                if not pending or time.monotonic() > drain_until:
                    break
        time.sleep(POLL_S)
    with lock:
        missing = len(pending)
    load_wall = result.get("wall_s") or (time.monotonic() - t_start)
    if missing:
        say(f"end-to-end: {missing} sessions not visible {DRAIN_S:.0f} s after the load ended")
    ch.disconnect()
    return {"target_events_per_s": rate_events, "events_per_s": acked[0] * cfg.batch_size / load_wall,
            "requests": acked[0], "errors": result.get("errors", {}),
            "http_p50_ms": percentile(result.get("latencies_ms", []), 50),
            "http_p99_ms": percentile(result.get("latencies_ms", []), 99),
            "sessions_measured": len(latencies), "sessions_missing": missing,
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "max_s": max(latencies) if latencies else None, "poll_interval_s": POLL_S,
            "warmup_s": waited, "duration_s": load_wall}
