"""What every phase of the benchmark needs: its configuration, the processes it starts, and small measurements.

Processes are started with ``subprocess.Popen`` in their own session and stopped by their pid (SIGTERM, then
SIGKILL after a grace period) — never by name. CPU and memory figures come from ``/proc``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from eventpipe.settings import REPO_ROOT, Settings

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A phase could not be measured (a process died, a server did not answer); the message says which."""


@dataclass(frozen=True)
class BenchConfig:
    """Knobs of one run. ``scale`` shrinks every count and duration (the smoke test runs at 0.02)."""

    scale: float = 1.0
    seed: int = 20261123
    batch_size: int = 100           # events per HTTP request (SPEC §6)
    gateway_seconds: float = 20.0   # length of the gateway load phase at scale 1
    load_processes: int = 2         # load generator processes ...
    load_threads: int = 8           # ... × keep-alive connections each (= the gateway's 2 workers × 8 threads)
    sink_events: int = 4 * 65_536   # pre-filled events (a multiple of the Kafka engine's block of 65 536 rows)
    sink_joins: int = 100_000       # pre-filled join records
    sink_timeout_s: float = 120.0   # longest a worker may take to drain its topic
    e2e_seconds: float = 20.0       # length of the end-to-end phase at scale 1
    memory_sessions: int = 1_000_000
    profile: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "BenchConfig":
        """``EVENTPIPE_BENCH_SCALE`` and ``EVENTPIPE_BENCH_SEED`` (the benchmark's own knobs; eventpipe's
        settings stay in ``Settings``). Raises ValueError on a malformed value."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("EVENTPIPE_BENCH_SCALE"):
            values["scale"] = float(env["EVENTPIPE_BENCH_SCALE"])
        if env.get("EVENTPIPE_BENCH_SEED"):
            values["seed"] = int(env["EVENTPIPE_BENCH_SEED"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        if not 0 < cfg.scale <= 10:
            raise ValueError(f"EVENTPIPE_BENCH_SCALE={cfg.scale} must be in (0, 10]")
        return cfg

    def count(self, full: int, minimum: int = 1) -> int:
        return max(minimum, int(round(full * self.scale)))

    def seconds(self, full: float, minimum: float = 2.0) -> float:
        return max(minimum, full * min(1.0, self.scale))


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: "Proc | None" = None) -> float:
    """Poll ``check`` until true; returns the seconds waited. Raises BenchError on timeout or if ``proc`` died."""
    t0 = time.monotonic()
    while not check():
        if proc is not None and proc.popen.poll() is not None:
            raise BenchError(f"{what}: {proc.name} exited with {proc.popen.returncode}; log {proc.log}:\n"
                             f"{proc.tail()}")
        if time.monotonic() - t0 > timeout_s:
            raise BenchError(f"{what}: not done after {timeout_s:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - t0


# --- /proc ---------------------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (gunicorn workers of a master, for example)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by these processes (live ones only)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM), or None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --- processes -------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[int]:
        return [self.pid, *children(self.pid)]

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the process's session, wait, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name}: did not stop in {timeout_s:.0f} s, killing")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        return self.popen.returncode


class Processes:
    """The processes one run started; ``stop_all`` stops them (latest first)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, cwd=REPO_ROOT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout_s: float = 30.0) -> int | None:
        code = proc.stop(timeout_s)
        if proc in self.procs:
            self.procs.remove(proc)
        return code

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc, 15.0)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def app_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment of an eventpipe process started by the benchmark (its settings, quiet logs)."""
    return {**settings.to_env(), "EVENTPIPE_LOG_LEVEL": "WARNING", **extra}


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100), nearest-rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


def run_json(argv: Sequence[str], input_obj: Any, timeout_s: float, env: dict[str, str] | None = None) -> Any:
    """Run a helper process that reads JSON on stdin and prints one JSON document; return it. Raises BenchError."""
    out = subprocess.run(list(argv), input=json.dumps(input_obj), capture_output=True, text=True,
                         timeout=timeout_s, cwd=REPO_ROOT, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise BenchError(f"{' '.join(argv[-2:])} failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_parallel(argv: Sequence[str], specs: Sequence[Any], timeout_s: float) -> list[Any]:
    """Run one helper process per spec at the same time (the spec as a JSON argument, one JSON document out);
    return the results in order. Raises BenchError when one fails or overruns."""
    popens = [subprocess.Popen([*argv, json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, cwd=REPO_ROOT) for spec in specs]
    results = []
    deadline = time.monotonic() + timeout_s
    try:
        for popen in popens:
            out, err = popen.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if popen.returncode != 0:
                raise BenchError(f"{' '.join(argv[-1:])} failed (exit {popen.returncode}):\n{err[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv[-1:])}: not done after {timeout_s:.0f} s") from None
    finally:
        for popen in popens:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
    return results
