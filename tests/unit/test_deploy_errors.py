"""Set-up failures stop with one clear message naming what failed and what to do (fakes stand in for the host)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy import clickhouse
from deploy.procs import DeployError


@pytest.fixture
def no_clickhouse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clickhouse, "server_binary", lambda: None)


def test_a_non_debian_host_is_told_to_install_clickhouse_or_point_elsewhere(
        no_clickhouse: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clickhouse.Path, "exists", lambda self: False if str(self) == "/etc/debian_version" else True)
    with pytest.raises(DeployError, match="not a Debian host.*EVENTPIPE_CLICKHOUSE_HOST"):
        clickhouse.install()


def test_without_root_the_install_command_is_spelled_out(no_clickhouse: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clickhouse.Path, "exists", lambda self: True)
    monkeypatch.setattr(clickhouse.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(clickhouse.os, "geteuid", lambda: 1000)
    with pytest.raises(DeployError, match="needs root.*sudo apt-get install clickhouse-server"):
        clickhouse.install()


def test_a_failing_apt_get_shows_its_output(no_clickhouse: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clickhouse.Path, "exists", lambda self: True)
    monkeypatch.setattr(clickhouse.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(clickhouse.os, "geteuid", lambda: 0)
    monkeypatch.setattr(clickhouse.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 100, stdout="", stderr="E: Unable to locate package clickhouse-server"))
    with pytest.raises(DeployError, match="(?s)apt-get update -q` failed.*Unable to locate package"):
        clickhouse.install()
