"""promtool checks the Prometheus configs and the alert rules, and runs the rules' unit tests (alerts_test.yml).

Needs Debian's ``prometheus`` package (installed here like ClickHouse when missing); no servers.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from deploy import prometheus
from eventpipe.settings import Settings

MONITORING = prometheus.MONITORING


@pytest.fixture(scope="module")
def promtool() -> str:
    prometheus.install()
    found = prometheus.binary("promtool")
    assert found, "the prometheus package is installed but promtool is not on PATH"
    return found


def run(promtool: str, *args: str) -> str:
    out = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=MONITORING)
    assert out.returncode == 0, f"promtool {' '.join(args)} (exit {out.returncode}):\n{out.stdout}{out.stderr}"
    return out.stdout + out.stderr


def test_the_alert_rules_are_valid(promtool: str) -> None:
    assert "SUCCESS: 7 rules found" in run(promtool, "check", "rules", str(prometheus.ALERT_RULES))


def test_every_alert_fires_and_stays_quiet_in_its_unit_tests(promtool: str) -> None:
    alerts = {line.split(":", 1)[1].strip() for line in prometheus.ALERT_RULES.read_text().splitlines()
              if line.strip().startswith("- alert:")}
    tests = (MONITORING / "alerts_test.yml").read_text()
    untested = {a for a in alerts if f"alertname: {a}" not in tests}
    assert not untested, f"alerts without a promtool test: {sorted(untested)}"
    assert "SUCCESS" in run(promtool, "test", "rules", "alerts_test.yml")


def test_the_docker_compose_config_is_valid(promtool: str) -> None:
    run(promtool, "check", "config", str(MONITORING / "prometheus.yml"))


def test_the_config_make_run_writes_is_valid(promtool: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), home=str(tmp_path))
    config = prometheus.write_config(settings)
    text = config.read_text()
    assert all(f'"{target}"' in text for jobs in prometheus.targets(settings).values() for target in jobs)
    run(promtool, "check", "config", str(config))
