"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked: every eventpipe service
runs a real entry point with arguments it accepts, and the workers are the same four that `make run` starts."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys

import yaml

from deploy.stack import WORKERS
from eventpipe.settings import REPO_ROOT, Settings

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


def test_the_dockerfile_installs_the_runtime_dependencies_pinned_by_the_lock_and_the_project() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "-c requirements.lock" in dockerfile and "pip install --no-cache-dir --no-deps -e ." in dockerfile
    assert "-r requirements.lock" not in dockerfile  # the lock also pins the dev extras (chdb-core, pytest)
    assert "['project']['dependencies']" in dockerfile


def test_clickhouse_is_a_current_lts_release() -> None:
    """LTS lines are each year's .3 and .8 releases; 26.8 is the newest at the time of writing (2026-11)."""
    image = COMPOSE["services"]["clickhouse"]["image"]
    match = re.fullmatch(r"clickhouse/clickhouse-server:(\d+)\.(\d+)", image)
    assert match, f"{image}: pin a release line (YY.M), not latest or a floating tag"
    year, month = int(match[1]), int(match[2])
    assert month in (3, 8) and (year, month) >= (26, 8), image


def test_the_default_user_is_reachable_over_the_network_with_the_password_every_service_uses() -> None:
    """Official images since 25.x disable network access for `default` unless CLICKHOUSE_USER or
    CLICKHOUSE_PASSWORD is set (then the entrypoint writes users.d/default-user.xml allowing it)."""
    server = COMPOSE["services"]["clickhouse"]
    env = server["environment"]
    assert env.get("CLICKHOUSE_PASSWORD") or env.get("CLICKHOUSE_USER", "default") != "default"
    names = {f.metadata["env"] for f in dataclasses.fields(Settings)}
    assert {"EVENTPIPE_CLICKHOUSE_USER", "EVENTPIPE_CLICKHOUSE_PASSWORD"} <= names
    clients = {name: svc for name, svc in COMPOSE["services"].items() if "build" in svc}
    assert "init" in clients and len(clients) >= 6
    for name, svc in clients.items():
        assert svc["environment"]["EVENTPIPE_CLICKHOUSE_HOST"] == "clickhouse", name
        assert svc["environment"]["EVENTPIPE_CLICKHOUSE_USER"] == env.get("CLICKHOUSE_USER", "default"), name
        assert svc["environment"]["EVENTPIPE_CLICKHOUSE_PASSWORD"] == env["CLICKHOUSE_PASSWORD"], name
    # the health check runs inside the container, where the client needs the password as well
    assert "$$CLICKHOUSE_PASSWORD" in server["healthcheck"]["test"][1]
