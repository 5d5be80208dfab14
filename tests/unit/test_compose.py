"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked: every eventpipe service
runs a real entry point with arguments it accepts, and the workers are the same four that `make run` starts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import yaml

from deploy.stack import WORKERS
from eventpipe.settings import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
OURS = {name: svc for name, svc in COMPOSE["services"].items() if "build" in svc}


def test_the_topology_is_complete() -> None:
    assert {"kafka", "clickhouse", "prometheus", "gateway"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    workers = sorted(svc["command"][3] for name, svc in OURS.items() if name.startswith("consumer-"))
    assert workers == sorted(WORKERS)


def test_every_command_names_a_real_entry_point_that_accepts_its_arguments() -> None:
    for name, svc in OURS.items():
        command = svc["command"]
        assert command[:2] == ["python", "-m"], name
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, f"{name}: no module {command[2]}"
        # --help after the real arguments: argparse validates them (bad subcommand → exit 2) and exits 0.
        out = subprocess.run([sys.executable, *command[1:], "--help"], capture_output=True, text=True,
                             cwd=REPO_ROOT, timeout=60)
        assert out.returncode == 0, f"{name}: {' '.join(command)} --help exited {out.returncode}: {out.stderr[-500:]}"


def test_the_dockerfile_installs_the_lock_and_the_project() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "pip install --no-cache-dir --no-deps -e ." in dockerfile
