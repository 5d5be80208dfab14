"""``make soak`` at a tiny scale (a few hundred requests, seconds): every kind of request is sent and answered,
the goals that hold at any scale hold, and the run leaves nothing behind. Never asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.soak import KINDS
from eventpipe.settings import REPO_ROOT, Settings


def test_soak_at_a_tiny_scale(infra: Settings, tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPIPE_")}
    env.update(infra.to_env())
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "soak", "--scale", "0.003", "--output",
                           str(output)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-5000:]}"
    results = json.loads(output.read_text())
    assert results["errors"] == {} and set(results) >= {"soak"} and "gateway" not in results
    soak = results["soak"]
    assert set(soak["by_kind"]) == {k.name for k in KINDS}
    assert sum(soak["statuses"].values()) == soak["requests"] >= 300
    assert soak["server_errors_not_503"] == 0
    assert soak["worker_restarts"] == 0 and soak["consumer_workers_exited"] == []
    assert soak["accepted_events"] > 0 and soak["exactly_once"], soak
    assert soak["unexpected"] == {}, soak["unexpected"]  # every kind got an answer the SPEC allows it
    assert soak["gateway_rss_after_mb"] > 0 and soak["slow_clients"]
    assert "soak: accepted events in events_final exactly once" in done.stdout
    from deploy.migrate import client

    databases = {row[0] for row in client(infra).execute("SHOW DATABASES")}
    assert not any(db.startswith(results["run_id"]) for db in databases)
