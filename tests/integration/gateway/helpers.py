"""Integration helpers of the gateway: the app over the real Kafka publisher (of ``settings.kafka_client``), and
reading topics back."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import falcon.testing

from eventpipe.settings import REPO_ROOT, Settings
from ingest_gateway.app import create_app
from ingest_gateway.keystore import KeyStore, create_key
from ingest_gateway.publisher import Publisher, make_publisher


@dataclasses.dataclass
class Gateway:
    settings: Settings
    client: falcon.testing.TestClient
    publisher: Publisher
    key: str
    other_key: str


def consume(settings: Settings, topic: str, count: int, timeout_s: float = 30.0) -> list:
    """The first ``count`` records of ``topic`` (all partitions), waiting up to ``timeout_s``; fewer on timeout."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        # Finding the partitions gets its own allowance: right after a broker restart metadata can be slow.
        deadline = time.monotonic() + 30
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.2)
        assert partitions, f"topic {topic} has no partitions in the metadata"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # A short extra poll so a test can also see that nothing *more* arrived.
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def make_gateway(settings: Settings, tmp_path: Path, **overrides) -> Gateway:
    settings = dataclasses.replace(settings, home=str(tmp_path), keys_file=str(tmp_path / "keys.json"), **overrides)
    key, _ = create_key(settings.keys_path, "acme")
    other, _ = create_key(settings.keys_path, "globex")
    publisher = make_publisher(settings)
    app = create_app(settings, KeyStore(settings.keys_path), publisher)
    return Gateway(settings, falcon.testing.TestClient(app), publisher, key, other)


def env_of(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPIPE_")}
    for f in dataclasses.fields(Settings):
        env[f.metadata["env"]] = str(getattr(settings, f.name))
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def free_port(settings: Settings | None = None) -> int:
    """A free port for a gateway a test starts: the first free one from ``settings.http_port`` upwards when
    EVENTPIPE_HTTP_PORT was set (engineers and CI jobs sharing a machine keep to their own ranges), else one the
    system picks."""
    if settings is not None and settings.http_port != Settings.http_port:
        for port in range(settings.http_port, settings.http_port + 200):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:  # taken (or in TIME_WAIT): try the next one
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 15):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_gateway(settings: Settings, env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """``python -m ingest_gateway serve`` with ``env``, logging to tmp_path/gateway.log; returns once /healthz
    answers, with its base URL (fails the test after 30 s)."""
    import pytest

    with open(tmp_path / "gateway.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "ingest_gateway", "serve"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{settings.http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if request(url + "/healthz", timeout=1)[0] == 200:
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("gateway did not start: " + (tmp_path / "gateway.log").read_text()[-2000:])


def stop_gateway(process: subprocess.Popen) -> None:
    """SIGTERM (the gateway drains), then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
