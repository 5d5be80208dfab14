"""Helpers for the consumer integration tests: workers as real subprocesses, producers, ClickHouse reads."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from eventpipe.settings import REPO_ROOT, Settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes tens of seconds (an outage is simulated)")


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes ``Settings.from_env()`` in a child equal ``settings`` (plus overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPIPE_")}
    values = dataclasses.asdict(dataclasses.replace(settings, **overrides))
    for f in dataclasses.fields(Settings):
        env[f.metadata["env"]] = str(values[f.name])
    return env


class Workers:
    """Worker processes started by one test; every one is stopped at the end (by its own pid)."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings, self.log_dir = settings, log_dir
        self.procs: list[subprocess.Popen] = []
        self.log_paths: dict[int, Path] = {}

    def start(self, worker: str, **overrides: Any) -> subprocess.Popen:
        overrides.setdefault("consumer_metrics_port", 0)
        overrides.setdefault("consumer_session_timeout_ms", 6000)
        overrides.setdefault("batch_seconds", 0.2)
        path = self.log_dir / f"{worker}-{len(self.procs)}.log"
        log = open(path, "ab")
        proc = subprocess.Popen([sys.executable, "-m", "consumers", worker], cwd=REPO_ROOT,
                                env=settings_env(self.settings, **overrides), stdout=log, stderr=log)
        self.procs.append(proc)
        self.log_paths[proc.pid] = path
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        return self.log_paths[proc.pid].read_text()

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout=60)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        """Each worker's state and the tail of its log; a live worker first prints its threads' stacks (SIGUSR1),
        so a worker stuck in a call shows where."""
        alive = [proc for proc in self.procs if proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5 if alive else 0)
        state = {path.name: ("running" if proc.poll() is None else f"exited {proc.returncode}")
                 for proc in self.procs for path in [self.log_paths[proc.pid]]}
        return "\n".join(f"--- {p.name} ({state.get(p.name, '?')})\n{p.read_text()[-6000:]}"
                         for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
def workers(isolated_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(isolated_settings, tmp_path)
    yield pool
    pool.stop_all()


def wait_until(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition",
               workers: Workers | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the workers' logs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    logs = workers.logs() if workers else ""
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}; last value {last!r}\n{logs}")


def bring_back(s: Settings, server: str, timeout_s: float = 120.0) -> None:
    """Start a server an outage test stopped (``"kafka"`` or ``"clickhouse"``, through deploy/) — unless another
    test run sharing the machine's servers already did."""
    from deploy import clickhouse, kafka
    from deploy.procs import DeployError

    module, answers = {"kafka": (kafka, lambda: kafka.answers(s.kafka_bootstrap)),
                       "clickhouse": (clickhouse, lambda: clickhouse.answers(s))}[server]
    deadline = time.monotonic() + timeout_s
    while not answers():
        try:
            module.start(s)
        except DeployError:  # transient: someone else is starting it right now
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
