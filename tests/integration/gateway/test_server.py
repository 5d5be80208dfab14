"""The gateway as it runs in production: ``python -m ingest_gateway serve`` (gunicorn, several workers)."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from eventpipe.codec import EVENT
from eventpipe.settings import Settings
from tests.unit.gateway.helpers import event, seed_v3_form

from .helpers import consume, env_of, free_port, request, start_gateway, stop_gateway


@dataclasses.dataclass
class Served:
    settings: Settings
    process: subprocess.Popen
    url: str
    env: dict

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "ingest_gateway", *args], env=self.env, capture_output=True,
                             text=True, timeout=60, check=True)
        return out.stdout.strip()


@pytest.fixture
def served(topics_settings: Settings, tmp_path: Path) -> Iterator[Served]:
    settings = dataclasses.replace(topics_settings, home=str(tmp_path), keys_file="", http_port=free_port(topics_settings),
                                   gateway_workers=2, gateway_threads=4, publish_timeout_s=3.0)
    env = env_of(settings)
    subprocess.run([sys.executable, "-m", "ingest_gateway", "keys", "ensure-demo", str(tmp_path / "demo_api_key")],
                   env=env, check=True, timeout=60)
    process, url = start_gateway(settings, env, tmp_path)
    yield Served(settings, process, url, env)
    stop_gateway(process)


def test_the_seed_over_real_http_with_the_demo_key(served: Served, tmp_path: Path) -> None:
    key = (tmp_path / "demo_api_key").read_text().strip()
    status, body = request(served.url + "/v3/events", seed_v3_form().encode(),
                           {"Content-Type": "application/x-www-form-urlencoded", "X-Api-Key": key})
    assert (status, json.loads(body)) == (200, {"APIVersion": 3, "result": 1})
    records = [EVENT.decode(m.value) for m in consume(served.settings, served.settings.topic_events, 2)]
    assert sorted(r["action"] for r in records) == ["END", "START"] and {r["account_id"] for r in records} == {"demo"}
    assert request(served.url + "/readyz")[0] == 200
    status, doc = request(served.url + "/openapi.json")
    assert status == 200 and "/v3/events" in json.loads(doc)["paths"]


def test_metrics_add_up_across_workers(served: Served, tmp_path: Path) -> None:
    key = (tmp_path / "demo_api_key").read_text().strip()
    for i in range(12):
        status, _ = request(served.url + "/v3/events", json.dumps([event(timestamp=1365772427 + i)]).encode(),
                            {"Content-Type": "application/json", "X-Api-Key": key})
        assert status == 200
    status, text = request(served.url + "/metrics")
    assert status == 200
    lines = [line for line in text.decode().splitlines() if line.startswith("eventpipe_gateway_events_accepted_total")]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) == 12.0


def test_keys_created_and_revoked_while_serving(served: Served) -> None:
    key = served.cli("keys", "create", "--account", "late")
    body = json.dumps([event()]).encode()
    headers = {"Content-Type": "application/json", "X-Api-Key": key}
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:  # each worker notices the new file within about a second
        statuses = [request(served.url + "/v3/events", body, headers)[0] for _ in range(4)]
        if statuses == [200] * 4:
            break
        time.sleep(0.5)
    assert statuses == [200] * 4
    key_id = next(line.split("\t")[0] for line in served.cli("keys", "list").splitlines() if "\tlate\t" in line)
    served.cli("keys", "revoke", key_id)
    time.sleep(2.5)
    assert [request(served.url + "/v3/events", body, headers)[0] for _ in range(4)] == [401] * 4


def test_sigterm_drains_the_request_in_flight(served: Served, tmp_path: Path) -> None:
    key = (tmp_path / "demo_api_key").read_text().strip()

    def head(body: bytes, connection: str) -> bytes:
        return (f"POST /v3/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: {key}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n").encode()

    warm_up = json.dumps([event(id="warm-up")]).encode()
    body = json.dumps([event(id="in-flight")]).encode()
    with socket.create_connection(("127.0.0.1", served.settings.http_port), timeout=30) as conn:
        # A first request on the connection makes sure a worker has accepted it (not just the kernel's backlog).
        conn.sendall(head(warm_up, "keep-alive") + warm_up)
        first = b""
        while b'"result":1}' not in first:
            chunk = conn.recv(65536)
            assert chunk, first
            first += chunk
        conn.sendall(head(body, "close") + body[:10])
        time.sleep(1.0)  # the second request is being read by a worker thread now
        served.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.sendall(body[10:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert served.process.wait(30) == 0
    ids = [EVENT.decode(m.value)["event_id"] for m in consume(served.settings, served.settings.topic_events, 2)]
    assert sorted(ids) == ["in-flight", "warm-up"]


def test_sighup_replaces_the_workers_and_keeps_serving(served: Served, tmp_path: Path) -> None:
    key = (tmp_path / "demo_api_key").read_text().strip()
    served.process.send_signal(signal.SIGHUP)
    time.sleep(2)
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline and status != 200:
        try:
            status, _ = request(served.url + "/v3/events", json.dumps([event()]).encode(),
                                {"Content-Type": "application/json", "X-Api-Key": key})
        except OSError:
            time.sleep(0.3)
    assert status == 200 and served.process.poll() is None
