"""Fixtures of the Zidium and Java interop tests: the Java build, a served gateway and workers on one run's
topics and database."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from eventpipe.settings import Settings
from tests.integration.consumers.conftest import Workers
from tests.integration.gateway.test_server import env_of, free_port, request

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
    log = open(tmp_path / "gateway.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "ingest_gateway", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{settings.http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if request(url + "/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("gateway did not start: " + (tmp_path / "gateway.log").read_text()[-2000:])
    workers = Workers(settings, tmp_path)
    yield Stack(settings, url, key_file.read_text().strip(), workers)
    workers.stop_all()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


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
