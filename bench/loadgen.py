"""The HTTP load generator: keep-alive connections POSTing pre-encoded v3 batches, closed-loop or paced.

Run as a process (``python -m bench.loadgen`` with a JSON spec on stdin, one JSON result on stdout) so that its
CPU use is its own and visible; ``run`` is also callable in-process (the end-to-end phase paces a few hundred
requests a second and needs each request's completion time).

Bodies are encoded before the clock starts (``application/x-www-form-urlencoded``, field ``data``), so the
generator's per-request work is a socket write and a response read.
"""

from __future__ import annotations

import http.client
import json
import pickle
import resource
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

OK_BODY = b'"result":1'


def encode_body(events: list[dict[str, Any]]) -> bytes:
    return urlencode({"data": json.dumps(events, separators=(",", ":"))}).encode("ascii")


def run(url: str, key: str, bodies: list[bytes], connections: int, duration_s: float, rate: float | None = None,
        record: bool = False, max_requests: int | None = None,
        on_done: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """POST ``bodies`` (in order, wrapping around) over ``connections`` keep-alive connections for ``duration_s``.

    ``rate``: requests per second to pace at (open loop); None: as fast as the answers come (closed loop).
    ``max_requests``: stop after that many. ``on_done(body index, status, wall time)`` is called from the
    connection's thread after each answer. Blocks for the duration; never raises for HTTP errors (counted).
    Returns counts, latencies (ms) and, when ``record``, ``[body index, status, wall time of the answer]``.
    """
    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port or 80, parts.path or "/v3/events"
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Api-Key": key, "Connection": "keep-alive"}
    lock = threading.Lock()
    counter = iter(range(10**12))
    latencies: list[float] = []
    done: list[tuple[int, int, float]] = []
    errors: dict[str, int] = {}
    limit = max_requests if max_requests is not None else 10**12
    t0 = time.monotonic()
    deadline = t0 + duration_s

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while True:
            with lock:
                i = next(counter)
            if i >= limit:
                break
            if rate:
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            if time.monotonic() >= deadline:
                break
            body = bodies[i % len(bodies)]
            started = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status if OK_BODY in payload or response.status != 200 else 299
            except (OSError, http.client.HTTPException) as exc:  # counted; a fresh connection for the next one
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            finished = time.monotonic()
            with lock:
                if status == 200:
                    latencies.append((finished - started) * 1000)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                if record:
                    done.append((i, status if isinstance(status, int) else 0, time.time()))
            if on_done is not None:
                on_done(i, status if isinstance(status, int) else 0, time.time())
        conn.close()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + 60)
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"ok": len(latencies), "errors": errors, "wall_s": wall, "latencies_ms": latencies,
            "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            "done": done if record else []}


def main() -> int:
    spec = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    with open(spec["bodies_file"], "rb") as f:
        bodies = pickle.load(f)[spec.get("start", 0)::spec.get("step", 1)]
    result = run(spec["url"], spec["key"], bodies, spec["connections"], spec["duration_s"], spec.get("rate"),
                 spec.get("record", False))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
