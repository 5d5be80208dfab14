"""After ``kill -9`` of the gateway's master, ``make run`` (deploy's ``procs.start``) starts it again at once: the
workers it left holding the port are recognised by what the pid file recorded and stopped; a port held by anything
else stays a clear error (issue 10 §1)."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import procs
from deploy.procs import DeployError
from deploy.stack import gateway_service
from eventpipe.settings import Settings

from .helpers import env_of, free_port, request


@pytest.fixture
def gateway_env(infra: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a gateway of this test, also in the environment (the deploy Service passes its own on)."""
    settings = dataclasses.replace(infra, home=str(tmp_path), keys_file="", http_port=free_port(infra),
                                   gateway_workers=2, gateway_threads=2)
    for name, value in env_of(settings).items():
        monkeypatch.setenv(name, value)
    subprocess.run([sys.executable, "-m", "ingest_gateway", "keys", "ensure-demo", str(tmp_path / "demo_api_key")],
                   check=True, timeout=60)
    return settings


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone
        return False


def test_a_gateway_whose_master_was_killed_starts_again_at_once(gateway_env: Settings) -> None:
    svc = gateway_service(gateway_env)
    assert procs.start(svc) is True
    try:
        master = procs.running_pid(svc)
        assert master is not None
        workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        assert len(workers) == 2
        os.kill(master, signal.SIGKILL)
        while alive(master):
            time.sleep(0.01)
        assert all(alive(w) for w in workers) and procs.port_open(gateway_env.http_port)  # orphans hold the port

        assert procs.start(svc) is True
        restarted = procs.running_pid(svc)
        assert restarted not in (None, master)
        assert not any(alive(w) for w in workers)
        url = f"http://{gateway_env.http_host}:{gateway_env.http_port}"
        assert request(url + "/healthz")[0] == 200
    finally:
        procs.stop(svc)
    assert procs.running_pid(svc) is None and not procs.port_open(gateway_env.http_port)


def test_make_stop_also_stops_what_a_killed_master_left(gateway_env: Settings) -> None:
    svc = gateway_service(gateway_env)
    procs.start(svc)
    master = procs.running_pid(svc)
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    os.kill(master, signal.SIGKILL)
    while alive(master):
        time.sleep(0.01)
    procs.stop(svc)
    assert not any(alive(w) for w in workers) and not svc.pid_file.exists()


def test_a_port_held_by_another_process_is_still_a_clear_error(gateway_env: Settings) -> None:
    svc = gateway_service(gateway_env)
    # A pid file naming a dead process of ours, and the port held by this test process (not of that session).
    dead = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    ticks = Path(f"/proc/{dead.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    dead.wait()
    svc.run_dir.mkdir(parents=True, exist_ok=True)
    svc.pid_file.write_text(f"{dead.pid} {ticks}\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", gateway_env.http_port))
        holder.listen()
        with pytest.raises(DeployError, match=f"port {gateway_env.http_port} on 127.0.0.1 is already taken by a "
                                              "process eventpipe did not start"):
            procs.start(svc)
    assert procs.running_pid(svc) is None
