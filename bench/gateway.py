"""The gateway under load, and the gateway process itself (started for the gateway and end-to-end phases)."""

from __future__ import annotations

import os
import pickle
import subprocess
import time
from pathlib import Path
from typing import Any

from eventpipe.settings import Settings

from . import loadgen
from .harness import (BenchConfig, BenchError, Proc, Processes, app_env, cpu_seconds, free_port, http_ok,
                      machine_cpu, percentile, python_module, replace, run_parallel, say, wait_for)
from .workload import ACCOUNT


def create_key(settings: Settings, account: str) -> str:
    """A key for ``account`` in the gateway's key file (before the gateway starts, which reads it)."""
    out = subprocess.run(python_module("ingest_gateway", "keys", "create", "--account", account),
                         capture_output=True, text=True, env={**os.environ, **app_env(settings)}, timeout=60)
    if out.returncode != 0:
        raise BenchError(f"creating a key for {account} failed:\n{out.stderr[-1500:]}")
    return out.stdout.strip().splitlines()[-1]


class Gateway:
    """A running ``python -m ingest_gateway serve`` with its own key file and port."""

    def __init__(self, procs: Processes, settings: Settings, home: Path, name: str = "gateway",
                 profile_dir: Path | None = None, module: str = "ingest_gateway", account: str = ACCOUNT,
                 port: int | None = None) -> None:
        """``module``: ``bench.http_limit`` runs the same server with a publisher that needs no Kafka (anchor D).
        ``account``: the account of the key it creates (``self.key``); ``port``: None for a free one."""
        port = port or free_port()
        self.settings = replace(settings, home=str(home), http_port=port, keys_file=str(home / "keys.json"))
        env = app_env(self.settings)
        self.key = create_key(self.settings, account)
        self.url = f"http://127.0.0.1:{port}/v3/events"
        argv = python_module(module, "serve") if module == "ingest_gateway" else python_module(module)
        if profile_dir is not None:
            argv = python_module("bench.profiled_gateway", str(profile_dir))
        self.proc: Proc = procs.start(name, argv, env)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "gateway start", self.proc)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "gateway readiness", self.proc)

    def warm_up(self, bodies: list[bytes], seconds: float = 2.0) -> None:
        """A few requests on every worker, so each has its Kafka producer connected before the clock starts."""
        result = loadgen.run(self.url, self.key, bodies, connections=8, duration_s=seconds)
        if not result["ok"]:
            raise BenchError(f"gateway warm-up: no request succeeded ({result['errors']}); log {self.proc.log}:\n"
                             f"{self.proc.tail()}")


def measure(cfg: BenchConfig, gateway: Gateway, bodies_file: Path, n_bodies: int, events_per_body: int
            ) -> dict[str, Any]:
    """Closed-loop load for ``cfg.gateway_seconds``: load_processes × load_threads keep-alive connections."""
    duration = cfg.seconds(cfg.gateway_seconds, minimum=3.0)
    specs = [{"url": gateway.url, "key": gateway.key, "bodies_file": str(bodies_file), "start": i,
              "step": cfg.load_processes, "connections": cfg.load_threads, "duration_s": duration}
             for i in range(cfg.load_processes)]
    tree = gateway.proc.tree()
    g0, (busy0, total0) = cpu_seconds(tree), machine_cpu()
    t0 = time.monotonic()
    results = run_parallel(python_module("bench.loadgen"), specs, timeout_s=duration + 120)
    wall = time.monotonic() - t0
    g1, (busy1, total1) = cpu_seconds(tree), machine_cpu()
    latencies = [x for r in results for x in r["latencies_ms"]]
    ok = sum(r["ok"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    load_wall = max(r["wall_s"] for r in results)
    load_cpu = sum(r["cpu_s"] for r in results)
    if errors:
        say(f"gateway: non-200 answers {errors}")
    return {
        "events_per_s": ok * events_per_body / load_wall, "requests_per_s": ok / load_wall, "requests": ok,
        "errors": errors, "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "connections": cfg.load_processes * cfg.load_threads, "duration_s": load_wall,
        "loadgen_cpu_s": load_cpu, "loadgen_cores": load_cpu / load_wall,
        "gateway_cpu_s": g1 - g0, "gateway_cores": (g1 - g0) / wall,
        "machine_busy_cores": (busy1 - busy0) / wall, "machine_cores_total": (total1 - total0) / wall,
        "batch_size": events_per_body, "distinct_bodies": n_bodies,
    }


def write_bodies(path: Path, batches: list[list[dict[str, Any]]]) -> int:
    bodies = [loadgen.encode_body(b) for b in batches]
    with open(path, "wb") as f:
        pickle.dump(bodies, f)
    return len(bodies)
