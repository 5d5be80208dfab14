"""The gateway's HTTP edge as it runs (``python -m ingest_gateway serve``, gunicorn with the gateway's worker):
clients that write the whole body before reading, compressed bodies and zip bombs, slow and idle clients
(SPEC §1.1, issue 10 §1). The Kafka client does not matter here: the default one is used."""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Iterator

import pytest

from bench.harness import status_kb
from eventpipe.codec import EVENT
from eventpipe.settings import Settings
from tests.unit.gateway.helpers import event

from .helpers import consume, env_of, free_port, request, start_gateway, stop_gateway

MiB = 1024 * 1024


@dataclasses.dataclass
class Edge:
    settings: Settings
    process: subprocess.Popen
    url: str
    key: str

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]


def serve(settings: Settings, tmp_path: Path, **overrides) -> Iterator[Edge]:
    settings = dataclasses.replace(settings, home=str(tmp_path), keys_file="", http_port=free_port(settings),
                                   **overrides)
    env = env_of(settings)
    subprocess.run([sys.executable, "-m", "ingest_gateway", "keys", "ensure-demo", str(tmp_path / "demo_api_key")],
                   env=env, check=True, timeout=60)
    process, url = start_gateway(settings, env, tmp_path)
    try:
        yield Edge(settings, process, url, (tmp_path / "demo_api_key").read_text().strip())
    finally:
        stop_gateway(process)


@pytest.fixture
def edge_topics(infra: Settings) -> Iterator[Settings]:
    from deploy.topics import delete_topics, ensure_topics

    settings = dataclasses.replace(infra, topic_prefix="eptest_edge_" + uuid.uuid4().hex[:10])
    ensure_topics(settings)
    yield settings
    delete_topics(settings, list(settings.topics))


@pytest.fixture
def edge(edge_topics: Settings, tmp_path: Path) -> Iterator[Edge]:
    yield from serve(edge_topics, tmp_path, gateway_workers=1, gateway_threads=4)


def post_whole_body_first(url: str, path: str, body: bytes, headers: dict, chunked: bool = False):
    """POST with http.client, which (like urllib, requests and Java's HttpURLConnection) writes the whole body
    before it reads a byte of the answer. Returns (status, headers, parsed JSON body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        if chunked:
            conn.request("POST", path, body=iter([body[i:i + MiB] for i in range(0, len(body), MiB)]),
                         headers=headers, encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def test_clients_that_write_the_whole_body_first_read_the_413(edge: Edge) -> None:
    too_big = b"[" + b" " * (11 * MiB) + b"]"
    v3 = {"Content-Type": "application/json", "X-Api-Key": edge.key}
    for chunked in (False, True):
        status, headers, body = post_whole_body_first(edge.url, "/v3/events", too_big, v3, chunked)
        assert status == 413 and body["error"]["code"] == 4 and "limit" in body["error"]["message"]
        assert headers["Connection"] == "close"
    status, headers, body = post_whole_body_first(edge.url, "/api/JoinEvents", too_big,
                                                  {"Content-Type": "application/json"})
    assert status == 413 and body["Code"] == 101 and headers["Connection"] == "close"
    # urllib too; and the gateway is serving normally afterwards
    status, raw = request(edge.url + "/v3/events", too_big, v3, timeout=60)
    assert status == 413 and json.loads(raw)["error"]["code"] == 4
    status, raw = request(edge.url + "/v3/events", json.dumps([event()]).encode(), v3)
    assert (status, json.loads(raw)) == (200, {"APIVersion": 3, "result": 1})


def test_compressed_batches_are_accepted_on_both_routes(edge: Edge) -> None:
    batch = [event(session="gzipsess1"), event(action="END", session="gzipsess1", timestamp=1365772533)]
    status, raw = request(edge.url + "/v3/events", gzip.compress(json.dumps(batch).encode()),
                          {"Content-Type": "application/json", "Content-Encoding": "gzip", "X-Api-Key": edge.key})
    assert (status, json.loads(raw)) == (200, {"APIVersion": 3, "result": 1})
    records = [EVENT.decode(m.value) for m in consume(edge.settings, edge.settings.topic_events, 2)]
    assert sorted(r["action"] for r in records) == ["END", "START"]
    join = {"Token": {"SecretKey": edge.key}, "Data": [{"ComponentId": str(uuid.uuid4()), "TypeId": str(uuid.uuid4())}]}
    status, raw = request(edge.url + "/api/JoinEvents", zlib.compress(json.dumps(join).encode()),
                          {"Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert status == 200 and json.loads(raw)["Code"] == 10
    assert len(consume(edge.settings, edge.settings.topic_joins, 1)) == 1
    status, raw = request(edge.url + "/v3/events", b"x", {"Content-Encoding": "br", "X-Api-Key": edge.key})
    assert status == 415 and json.loads(raw)["error"]["code"] == 5


def kib(pid: int, field: str) -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a live process, in KiB."""
    value = status_kb(pid, field)
    assert value is not None, f"process {pid} is gone"
    return value


def test_a_gzip_bomb_of_gibibytes_is_a_413_that_costs_no_more_than_the_limit(edge: Edge) -> None:
    limit = edge.settings.max_body_bytes
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    member = b"".join(c.compress(zeros) for _ in range(256)) + c.flush()
    bomb = member * 32  # 8 GiB of zeros once decompressed
    assert len(bomb) < limit
    (worker,) = edge.workers()
    before = kib(worker, "VmHWM")
    status, headers, body = post_whole_body_first(
        edge.url, "/v3/events", bomb,
        {"Content-Type": "application/json", "Content-Encoding": "gzip", "X-Api-Key": edge.key})
    assert status == 413 and body["error"]["code"] == 4 and "once decompressed" in body["error"]["message"]
    grown_kib = kib(worker, "VmHWM") - before
    assert grown_kib * 1024 < 3 * limit, f"the worker's peak RSS grew by {grown_kib} KiB"
    assert edge.workers() == [worker]  # the same worker, alive and serving
    assert request(edge.url + "/healthz")[0] == 200


def test_large_bodies_do_not_stay_in_the_workers_memory(edge: Edge) -> None:
    """Bodies near the limit and bombs decompressed up to it, on every request thread: the memory goes back to
    the system after each request (glibc's per-thread arenas kept it — the soak saw 101 → 308 MB)."""
    limit = edge.settings.max_body_bytes
    large = b"[" + b" " * (limit - 100) + b"]"  # within the limit, read whole, refused as an empty batch
    bomb = gzip.compress(bytes(2 * limit))
    v3 = {"Content-Type": "application/json", "X-Api-Key": edge.key}
    (worker,) = edge.workers()
    assert request(edge.url + "/healthz")[0] == 200
    before = kib(worker, "VmRSS")

    def client() -> None:
        for _ in range(6):
            assert request(edge.url + "/v3/events", large, v3, timeout=60)[0] == 400
            assert request(edge.url + "/v3/events", bomb, {**v3, "Content-Encoding": "gzip"}, timeout=60)[0] == 413

    clients = [threading.Thread(target=client) for _ in range(edge.settings.gateway_threads)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(120)
    time.sleep(0.5)
    grown = kib(worker, "VmRSS") - before
    print(f"RSS {before} KiB before, {before + grown} KiB after")
    # each thread held up to ~3 × the limit at once (the body, its text, the decompressed bomb): without the
    # memory going back that stays, 4 threads × tens of MiB; with it, what is left is Python's own caches
    assert grown * 1024 < limit, f"the worker kept {grown} KiB after the large requests"


class SlowClient(threading.Thread):
    """Sends a request a byte every ``pause_s`` seconds (its head first, whole, when ``body_only``); records how
    the gateway ended it."""

    def __init__(self, port: int, body_only: bool, pause_s: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.body_only, self.pause_s, self.stop = body_only, pause_s, stop
        self.answer = b""

    def run(self) -> None:
        head = b"POST /v3/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
        body = b" " * 4000
        try:
            if self.body_only:
                self.sock.sendall(head)
            for byte in (body if self.body_only else head + body):
                if self.stop.wait(self.pause_s):
                    return
                self.sock.send(bytes([byte]))
        except OSError:  # the gateway closed the connection: what the test waits for
            pass
        self.sock.settimeout(5)
        try:
            self.answer = self.sock.recv(1000)
        except OSError:
            pass


def test_slow_and_idle_clients_do_not_stop_the_others(edge_topics: Settings, tmp_path: Path) -> None:
    workers, threads = 1, 2
    gen = serve(edge_topics, tmp_path, gateway_workers=workers, gateway_threads=threads, http_read_timeout_s=3.0)
    edge = next(gen)
    port = edge.settings.http_port
    stop = threading.Event()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2 * workers * threads)]
    slow = [SlowClient(port, body_only=i % 2 == 1, pause_s=0.5, stop=stop) for i in range(3 * workers * threads)]
    try:
        for client in slow:
            client.start()
        time.sleep(1)  # every slow client has sent something: a thread would be theirs in plain gthread
        headers = {"Content-Type": "application/json", "X-Api-Key": edge.key}
        for i in range(5):
            status, raw = request(edge.url + "/v3/events", json.dumps([event(timestamp=1365772427 + i)]).encode(),
                                  headers, timeout=30)
            assert (status, json.loads(raw)) == (200, {"APIVersion": 3, "result": 1})
        # The slow ones are cut off at their deadline (3 s + 4000 bytes at the minimum rate), with a 408.
        for client in slow:
            client.join(60)
            assert not client.is_alive(), "a byte-a-second client was never cut off"
            assert client.answer.startswith(b"HTTP/1.1 408"), client.answer
        for sock in idle:
            sock.settimeout(30)
            assert sock.recv(1000).startswith(b"HTTP/1.1 408")
    finally:
        stop.set()
        for sock in idle:
            sock.close()
        gen.close()


def test_a_client_that_waits_for_100_continue_gets_it(edge: Edge) -> None:
    """curl sends ``Expect: 100-continue`` and holds the body back until the 100 (or a second) comes."""
    body = json.dumps([event()] * 20).encode()
    head = (f"POST /v3/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Api-Key: {edge.key}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", edge.settings.http_port), timeout=30) as sock:
        sock.sendall(head)
        assert sock.recv(1000) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while not answer.endswith(b"}") and (piece := sock.recv(10000)):
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"APIVersion":3,"result":1}')
