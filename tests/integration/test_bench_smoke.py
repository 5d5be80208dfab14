"""``make bench`` end to end at a tiny scale: the harness runs every phase and writes its table and JSON.

Never asserts a speed — only that each phase produced its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eventpipe.settings import REPO_ROOT, Settings


def test_bench_runs_every_phase_at_a_tiny_scale(infra: Settings, tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPIPE_")}
    env.update(infra.to_env())
    env["EVENTPIPE_BENCH_SCALE"] = "0.02"
    done = subprocess.run([sys.executable, "-m", "bench", "--output", str(output)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-5000:]}"
    results = json.loads(output.read_text())
    assert results["errors"] == {}
    assert results["config"]["scale"] == 0.02
    producers = results["producers"]
    for anchor in ("kafka_python", "confluent", "perf_test"):
        assert producers[anchor]["rate"] > 0 and producers[anchor]["acked"] > 0, anchor
    for label in ("confluent", "kafka_python", "http_limit"):
        gateway = results["gateway"][label]
        assert gateway["requests"] > 0 and gateway["errors"] == {}, label
        assert gateway["p50_ms"] is not None and gateway["p99_ms"] >= gateway["p50_ms"]
    sinks = results["sinks"]
    for worker in ("events", "sessions", "joins", "anchor_c", "events_kafka_python", "sessions_kafka_python",
                   "joins_kafka_python"):
        assert sinks[worker]["done"] == sinks[worker]["total"] > 0, worker
    e2e = results["e2e"]
    assert e2e["pipeline_max"]["events_per_s"] > 0
    assert e2e["sessions_measured"] > 0 and e2e["sessions_missing"] == 0
    memory = results["memory"]
    assert memory["open_keys"] == memory["sessions"] and memory["peak_rss_mb"] > 0
    for worker in ("sessions", "joins"):
        recovered = results["recovery"][worker]
        assert recovered["open_keys"] > 0 and recovered["peak_rss_mb"] > 0, worker
        assert recovered["assignment_s"] is not None and recovered["restore_s"] is not None, worker
        assert recovered["consuming_s"] > 0 and recovered["restart_peak_rss_mb"] > 0, worker
    # The table is printed, every row with a figure.
    assert "| measurement | value | anchor (same run) |" in done.stdout
    for label in ("gateway events/s", "events sink", "sessions worker", "joins worker", "end to end", "peak RSS",
                  "kill -9 + restart"):
        assert label in done.stdout, label
    # Everything the run created is gone.
    from deploy.migrate import client

    databases = {row[0] for row in client(infra).execute("SHOW DATABASES")}
    assert not any(db.startswith(results["run_id"]) for db in databases)
