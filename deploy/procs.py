"""Background processes that eventpipe starts, tracked by pid files — never found or killed by a broad name.

A pid file holds the pid and its start time (in clock ticks since boot, from /proc); the process must also have the
service's marker in its command line, so a recycled pid belonging to some other program is never signalled.

Each service runs in a session of its own (its leader's pid is the session and process-group id).  When the
leader died without its children (``kill -9`` of gunicorn's master leaves its workers holding the port), the
children are found by what was recorded: members of that session and process group that started after the
leader.  Linux does not reuse a pid while it still names a session or group, so nothing else can match.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence


class DeployError(RuntimeError):
    """A set-up step failed; the message says what failed and what to do. The CLI prints it and exits 1."""


def say(message: str) -> None:
    """Progress output for long steps (stderr, so it shows under pytest and make alike)."""
    print(f"[eventpipe] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Service:
    name: str
    argv: Sequence[str]
    run_dir: Path            # where NAME.pid lives
    log_file: Path
    marker: str              # must appear in /proc/PID/cmdline
    ready: Callable[[], bool]
    ready_timeout_s: float = 90.0
    ports: Sequence[int] = ()
    env: dict[str, str] | None = None
    cwd: Path | None = None
    stop_timeout_s: float = 30.0
    what_to_do: str = ""     # appended to errors: how the user can get around a failure
    extra: dict = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    # Popen returns once exec has closed the close-on-exec pipe, a moment before the kernel has set up the new
    # argv: an empty cmdline of a live process means "mid-exec", so look again briefly.
    for _ in range(50):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.01)
    return ""


@dataclass(frozen=True)
class ProcStat:
    """What /proc/PID/stat says about a process that matters here."""

    state: str
    pgid: int
    sid: int
    start_ticks: int


def proc_stat(pid: int) -> ProcStat | None:
    """The process's state, group, session and start time, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # invalid input: the process is gone (or never was)
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 (state) is fields[0]
    return ProcStat(state=fields[0], pgid=int(fields[2]), sid=int(fields[3]), start_ticks=int(fields[19]))


def _recorded(service: Service) -> tuple[int, int | None] | None:
    """(pid, start ticks) from the pid file; the start time is absent in files of older versions."""
    try:
        parts = service.pid_file.read_text().split()
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):  # invalid input: no pid file, or not one of ours
        return None


def _record(service: Service, pid: int) -> None:
    stat = proc_stat(pid)
    service.pid_file.write_text(f"{pid} {stat.start_ticks}\n" if stat else f"{pid}\n")


def _is_ours(pid: int, start_ticks: int | None, marker: str) -> bool:
    stat = proc_stat(pid)
    if stat is None or stat.state == "Z":
        return False
    if start_ticks is not None and stat.start_ticks != start_ticks:
        return False  # the pid was recycled
    return marker in _cmdline(pid)


def running_pid(service: Service) -> int | None:
    """The pid of our live process for this service, or None (a stale pid file is removed)."""
    recorded = _recorded(service)
    if recorded is None:
        return None
    if _is_ours(recorded[0], recorded[1], service.marker):
        return recorded[0]
    service.pid_file.unlink(missing_ok=True)
    return None


def leftovers(service: Service) -> list[int]:
    """Live processes that the service's dead leader left behind (its session and process group, started no
    earlier than it); [] while the leader runs or when nothing was recorded."""
    recorded = _recorded(service)
    if recorded is None or _is_ours(recorded[0], recorded[1], service.marker):
        return []
    leader, start_ticks = recorded
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        stat = proc_stat(int(entry.name))
        if (stat is not None and stat.state != "Z" and stat.sid == leader and stat.pgid == leader
                and (start_ticks is None or stat.start_ticks >= start_ticks)):
            found.append(int(entry.name))
    return sorted(found)


def stop_leftovers(service: Service) -> list[int]:
    """SIGTERM what a crashed leader left behind, wait, then SIGKILL; returns their pids. Blocks up to
    ``stop_timeout_s``."""
    pids = leftovers(service)
    if not pids:
        return []
    say(f"{service.name}: its last run died and left pids {', '.join(map(str, pids))}: stopping them")
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + service.stop_timeout_s
    while time.monotonic() < deadline and leftovers(service):
        time.sleep(0.2)
    for pid in leftovers(service):
        say(f"{service.name}: pid {pid} did not stop in {service.stop_timeout_s:.0f}s, killing")
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and leftovers(service):
        time.sleep(0.1)
    return pids


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(service: Service) -> bool:
    """Start the service unless ours is already running; wait until it is ready.

    Blocks up to ``ready_timeout_s``. Returns True if it started it, False if it was already up.
    Raises DeployError (after killing what it started) if a port is taken, the process dies or never gets ready.
    """
    stop_leftovers(service)  # before running_pid drops the pid file that names them
    if running_pid(service) is not None:
        if service.ready():
            say(f"{service.name}: already running (pid file {service.pid_file})")
            return False
        _wait_ready(service, running_pid(service))
        return False
    for port in service.ports:
        if port_open(port):
            raise DeployError(
                f"{service.name}: port {port} on 127.0.0.1 is already taken by a process eventpipe did not start. "
                f"Stop that process, or {service.what_to_do or 'free the port'}.")
    service.run_dir.mkdir(parents=True, exist_ok=True)
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    say(f"{service.name}: starting (log {service.log_file})")
    with open(service.log_file, "ab") as log:
        proc = subprocess.Popen(
            list(service.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(service.env or {})}, cwd=service.cwd, start_new_session=True)
    _record(service, proc.pid)
    _wait_ready(service, proc.pid, proc)
    return True


def start_all(services: Sequence[Service]) -> list[Service]:
    """Start each service in order (``start``); returns those started now. If one fails, stops the ones started
    here, newest first, and re-raises."""
    started: list[Service] = []
    try:
        for service in services:
            if start(service):
                started.append(service)
    except BaseException:
        for service in reversed(started):
            stop(service)
        raise
    return started


def _wait_ready(service: Service, pid: int | None, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    next_note = t0 + 10
    while True:
        if service.ready():
            say(f"{service.name}: ready after {time.monotonic() - t0:.1f}s (pid {pid})")
            return
        dead = proc.poll() is not None if proc else (pid is None or running_pid(service) is None)
        if dead:
            service.pid_file.unlink(missing_ok=True)
            raise DeployError(f"{service.name}: exited during start. Last log lines ({service.log_file}):\n"
                              f"{_tail(service.log_file)}\n{service.what_to_do}")
        now = time.monotonic()
        if now - t0 > service.ready_timeout_s:
            stop(service)
            raise DeployError(f"{service.name}: not ready after {service.ready_timeout_s:.0f}s, stopped it. "
                              f"Last log lines ({service.log_file}):\n{_tail(service.log_file)}\n{service.what_to_do}")
        if now >= next_note:
            say(f"{service.name}: still waiting ({now - t0:.0f}s)")
            next_note = now + 10
        time.sleep(0.25)


def stop(service: Service) -> bool:
    """SIGTERM our process (its whole session), wait, then SIGKILL. Returns True if something was stopped (what a
    crashed run left behind included)."""
    if stop_leftovers(service):
        service.pid_file.unlink(missing_ok=True)
        return True
    pid = running_pid(service)
    if pid is None:
        return False
    say(f"{service.name}: stopping pid {pid}")
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + service.stop_timeout_s
    while time.monotonic() < deadline and running_pid(service) is not None:
        time.sleep(0.2)
    if running_pid(service) is not None:
        say(f"{service.name}: did not stop in {service.stop_timeout_s:.0f}s, killing")
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.5)
    service.pid_file.unlink(missing_ok=True)
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # transient: it exited meanwhile
        pass


def _signal_group(pid: int, sig: int) -> None:
    # Each service runs in its own session (start_new_session), so its pgid is its pid; children go too.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
