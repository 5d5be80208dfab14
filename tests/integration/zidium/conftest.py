"""Fixtures of the Zidium and Java interop tests: the Java build, a served gateway and workers on one run's
topics and database."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from eventpipe.settings import Settings
from tests.integration.consumers.conftest import Workers
from tests.integration.gateway.helpers import env_of, free_port, start_gateway, stop_gateway

from . import java_build


@pytest.fixture(scope="session")
def java_classpath() -> str:
    """tests/java built once per session; fails (never skips) without Maven or Java."""
    try:
        classpath, seconds = java_build.build()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    print(f"\ntests/java built in {seconds:.1f} s")
    return classpath


@dataclasses.dataclass
class Stack:
    settings: Settings
    url: str
    key: str
    workers: Workers


@pytest.fixture
def stack(isolated_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """A served gateway (one worker) on the test's own topics and database; start workers with stack.workers."""
    settings = dataclasses.replace(isolated_settings, home=str(tmp_path), keys_file="", http_port=free_port(),
                                   gateway_workers=1, gateway_threads=4, publish_timeout_s=5.0)
    env = env_of(settings)
    key_file = tmp_path / "demo_api_key"
    subprocess.run([sys.executable, "-m", "ingest_gateway", "keys", "ensure-demo", str(key_file)], env=env,
                   check=True, timeout=60)
    process, url = start_gateway(settings, env, tmp_path)
    workers = Workers(settings, tmp_path)
    yield Stack(settings, url, key_file.read_text().strip(), workers)
    workers.stop_all()
    stop_gateway(process)


def wait_rows(client, query: str, params: dict, count: int, timeout_s: float = 60.0,
              until: Callable[[list[tuple]], bool] = lambda rows: True) -> list[tuple]:
    """Poll ClickHouse until ``query`` returns ``count`` rows that satisfy ``until`` (or the timeout passes);
    returns the last result. Blocks."""
    deadline = time.monotonic() + timeout_s
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        rows = client.execute(query, params)
        if len(rows) >= count and until(rows):
            return rows
        time.sleep(0.5)
    return rows
