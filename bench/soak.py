"""The soak (SPEC §6, ``python -m bench --only soak``, ``make soak``): 100 000 mixed valid, invalid and hostile
requests to both routes of a real gateway, with every worker consuming, then what held and what did not.

The requests are drawn from ``KINDS`` (a fixed shuffle of the seed): valid batches (form, JSON, gzip, deflate),
invalid events, mutated and truncated bodies, uploads cut short, wrong content types, wrong and missing keys,
unknown encodings, gzip bombs, oversized bodies written whole before the answer is read (as ``urllib`` does), and
all the while a few slow clients — idle ones and ones sending a byte a second — held open beside the load. Each
kind names the answers the SPEC allows it (``expected``); anything else is counted as unexpected.

Reported: answers by kind and by status; 5xx other than 503 (goal 0); gateway RSS before and after; gunicorn
workers the gateway had to replace and consumer workers that exited (goal 0 each); and that every event of an
acknowledged batch is in ``events_final`` exactly once — every id accounted for, no id twice, nothing else. Clean
batches are sent under one account, mutated and truncated ones under another (a mutation the gateway accepts has
ids nobody can predict): for that account only duplicates are checked.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from eventpipe.contract import load_event_types
from eventpipe.settings import Settings
from ingest_gateway.records import event_ids
from ingest_gateway.validation import Limits, validate_events

from .gateway import Gateway, create_key
from .harness import (BenchConfig, BenchError, Processes, app_env, children, python_module, replace, say,
                      status_kb, wait_for)

REQUESTS = 100_000          # at scale 1
CONNECTIONS = 8             # keep-alive client connections sending the mix
SLOW_IDLE, SLOW_DRIBBLE = 2, 2  # slow clients held open at any time during the load
SLOW_GIVE_UP_S = 30.0       # a slow client the gateway has not dropped by then is closed by us (and counted)
DRAIN_S = 180.0             # after the load, how long the events may take to reach events_final
OVER_LIMIT = 11 * 1024 * 1024  # decompressed / plain size of bombs and oversized bodies (limit: 10 MiB)
ACCOUNT, OTHER_ACCOUNT = "soak", "soak_mutated"
NOT_5XX = "any answer but a 5xx, or the connection closed"

FORM, JSON_TYPE = "application/x-www-form-urlencoded", "application/json"


@dataclass(frozen=True)
class Kind:
    name: str
    weight: float          # share of the requests; 0: a fixed count (``fixed``)
    expected: frozenset[str] | str
    fixed: int = 0         # requests at scale 1 when weight is 0


V3_OK, ZID_OK = frozenset({"200"}), frozenset({"200 Code 10"})
KINDS = (
    Kind("v3 valid form", 20, V3_OK), Kind("v3 valid json", 10, V3_OK), Kind("v3 valid gzip", 5, V3_OK),
    Kind("v3 valid deflate", 2, V3_OK), Kind("v3 invalid events", 10, frozenset({"422"})),
    Kind("v3 mutated", 8, NOT_5XX), Kind("v3 truncated", 4, NOT_5XX), Kind("v3 upload cut short", 0.5, NOT_5XX),
    Kind("v3 wrong content type", 3, frozenset({"415"})), Kind("v3 wrong key", 2, frozenset({"401"})),
    Kind("v3 no key", 1, frozenset({"401"})), Kind("v3 unknown encoding", 1.5, frozenset({"415"})),
    Kind("v3 gzip bomb", 0.5, frozenset({"413"})), Kind("v3 oversized, written whole", 0, frozenset({"413"}), 20),
    Kind("joins valid", 10, ZID_OK), Kind("joins valid gzip", 2, ZID_OK), Kind("joins bad records", 4, ZID_OK),
    Kind("joins wrong key", 2, frozenset({"200 Code 1002"})), Kind("joins unparsable", 2, frozenset({"200 Code 101"})),
    Kind("joins mutated", 4, NOT_5XX), Kind("joins truncated", 2, NOT_5XX),
    Kind("joins unknown encoding", 1, frozenset({"415"})), Kind("joins gzip bomb", 0.5, frozenset({"413"})),
    Kind("joins oversized, written whole", 0, frozenset({"413"}), 10),
)


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    ids: list[str] = field(default_factory=list)  # event ids the gateway acknowledges with a 200
    cut: bool = False                              # send half the body, then close the write side


def schedule(cfg: BenchConfig) -> list[Kind]:
    """The kinds of the run's requests in their order: each kind's share of ``REQUESTS × scale``, shuffled."""
    total = cfg.count(REQUESTS, 200)
    weights = sum(k.weight for k in KINDS)
    out: list[Kind] = []
    for kind in KINDS:
        n = cfg.count(kind.fixed, 1) if not kind.weight else max(1, round(total * kind.weight / weights))
        out += [kind] * n
    random.Random(cfg.seed).shuffle(out)
    return out


class Traffic:
    """Builds request ``i`` of a kind from its own seeded generator (the same run sends the same bytes)."""

    def __init__(self, seed: int, keys: dict[str, str], types: frozenset[str]) -> None:
        self.seed, self.keys, self.types = seed, keys, types
        self.now = int(time.time())
        self.run = uuid.uuid4().hex[:8]
        self.bomb = gzip.compress(b" " * OVER_LIMIT + b"[]", 9)
        self.oversized = b" " * OVER_LIMIT + b"[]"
        self.components = [str(uuid.UUID(int=i + 1)) for i in range(8)]

    # --- bodies ---
    def events(self, rng: random.Random, i: int, client_ids: bool) -> list[dict[str, Any]]:
        session = f"sk{self.run[:4]}{i:010d}"
        start = self.now - rng.randrange(3600, 86_400)
        entities = [{"key": "app", "value": "soak"}, {"key": "n", "value": rng.randrange(1000)},
                    {"key": "o", "value": {"list": [1, None, True], "s": "ü"}}]
        evs = [{"action": "START", "type": "APPSTART", "timestamp": start, "session": session, "entities": entities}]
        evs += [{"action": "UPDATE", "type": "APPSTART", "timestamp": start + u + 1, "session": session,
                 "entities": []} for u in range(rng.randrange(0, 8))]
        if rng.random() < 0.8:
            evs.append({"action": "END", "type": "APPSTART", "timestamp": start + rng.randrange(10, 900),
                        "session": session, "entities": entities[:1]})
        if rng.random() < 0.3:
            evs.append({"action": "UPDATE", "type": "SCREEN", "timestamp": start, "entities": entities[1:2]})
        if client_ids:
            for j, e in enumerate(evs):
                e["id"] = f"{self.run}-{i}-{j}"
        return evs

    def ids(self, evs: list[dict[str, Any]]) -> list[str]:
        """The ids the gateway gives these events: its own validation and id derivation (SPEC §2)."""
        valid, errors = validate_events(evs, self.types, Limits())
        if errors:
            raise BenchError(f"soak: a batch meant to be valid is not: {errors[:3]}")
        return event_ids(ACCOUNT, valid)

    def invalid(self, rng: random.Random, i: int) -> list[dict[str, Any]]:
        evs = self.events(rng, i, client_ids=False)
        e = rng.choice(evs)
        defect = rng.randrange(5)
        if defect == 0:
            e["action"] = "STOP"
        elif defect == 1:
            e["timestamp"] = e["timestamp"] * 1000  # milliseconds
        elif defect == 2:
            e["session"] = "short"
        elif defect == 3:
            e["type"] = "NOT_A_TYPE"
        else:
            e["entities"] = [{"key": "", "value": 1}]
        return evs

    def join_records(self, rng: random.Random, bad: bool) -> list[dict[str, Any]]:
        records = []
        for _ in range(rng.randrange(1, 10)):
            start = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.now - rng.randrange(0, 86_400)))
            records.append({"ComponentId": rng.choice(self.components), "TypeId": rng.choice(self.components),
                            "JoinKey": rng.randrange(3), "StartDate": start, "JoinInterval": rng.choice([0, 600]),
                            "Importance": rng.choice(["Alarm", "Warning", 150]), "Count": rng.randrange(0, 4),
                            "Message": f"soak {rng.randrange(100)}", "Version": "1.0"})
        if bad:
            for r in rng.sample(records, max(1, len(records) // 2)):
                r[rng.choice(["ComponentId", "TypeId", "StartDate", "Importance"])] = rng.choice(["x", 12, None, [1]])
        return records

    # --- requests ---
    def v3(self, ctype: str = JSON_TYPE, account: str = ACCOUNT, **headers: str) -> dict[str, str]:
        return {"Content-Type": ctype, "X-Api-Key": self.keys[account], **headers}

    def request(self, kind: Kind, i: int) -> Request:
        rng = random.Random(self.seed * 1_000_003 + i)
        name = kind.name
        if name.startswith("joins"):
            return self.join_request(name, rng)
        if name == "v3 oversized, written whole":
            return Request("/v3/events", self.oversized, self.v3())
        if name == "v3 gzip bomb":
            return Request("/v3/events", self.bomb, self.v3(**{"Content-Encoding": "gzip"}))
        if name == "v3 invalid events":
            return Request("/v3/events", json.dumps(self.invalid(rng, i)).encode(), self.v3())
        hostile = name in ("v3 mutated", "v3 truncated", "v3 upload cut short")
        evs = self.events(rng, i, client_ids=name == "v3 valid form" or hostile)
        ids = [] if hostile else self.ids(evs)
        form = name == "v3 valid form" or (hostile and rng.random() < 0.5)
        body = (urlencode({"data": json.dumps(evs)}).encode() if form else json.dumps(evs).encode())
        headers = self.v3(FORM if form else JSON_TYPE, OTHER_ACCOUNT if hostile else ACCOUNT)
        if name == "v3 valid gzip":
            return Request("/v3/events", gzip.compress(body, 1), {**headers, "Content-Encoding": "gzip"}, ids)
        if name == "v3 valid deflate":
            return Request("/v3/events", zlib.compress(body, 1), {**headers, "Content-Encoding": "deflate"}, ids)
        if name == "v3 mutated":
            return Request("/v3/events", mutate(rng, body), headers)
        if name == "v3 truncated":
            return Request("/v3/events", body[:rng.randrange(len(body))], headers)
        if name == "v3 upload cut short":
            return Request("/v3/events", body, headers, cut=True)
        # The rest carry a valid batch: should the gateway wrongly take one, its events count as accepted.
        if name == "v3 wrong content type":
            headers["Content-Type"] = rng.choice(["text/plain", "application/xml", "image/png"])
        elif name == "v3 wrong key":
            headers["X-Api-Key"] = uuid.UUID(int=rng.getrandbits(128)).hex
        elif name == "v3 no key":
            del headers["X-Api-Key"]
        elif name == "v3 unknown encoding":
            headers["Content-Encoding"] = rng.choice(["br", "zstd", "x-rot13"])
        return Request("/v3/events", body, headers, ids)

    def join_request(self, name: str, rng: random.Random) -> Request:
        path = "/api/JoinEvents"
        key = self.keys[OTHER_ACCOUNT if name in ("joins mutated", "joins truncated") else ACCOUNT]
        if name == "joins wrong key":
            key = str(uuid.UUID(int=rng.getrandbits(128)))
        body = json.dumps({"Token": {"SecretKey": key},
                           "Data": self.join_records(rng, bad=name == "joins bad records")}).encode()
        headers = {"Content-Type": JSON_TYPE}
        if name == "joins valid gzip":
            return Request(path, gzip.compress(body, 1), {**headers, "Content-Encoding": "gzip"})
        if name == "joins unparsable":
            return Request(path, body[: len(body) // 2] + b"}}{", headers)
        if name == "joins mutated":
            return Request(path, mutate(rng, body), headers)
        if name == "joins truncated":
            return Request(path, body[:rng.randrange(len(body))], headers)
        if name == "joins unknown encoding":
            return Request(path, body, {**headers, "Content-Encoding": "br"})
        if name == "joins gzip bomb":
            return Request(path, self.bomb, {**headers, "Content-Encoding": "gzip"})
        if name == "joins oversized, written whole":
            return Request(path, self.oversized, headers)
        return Request(path, body, headers)  # valid, bad records, wrong key


def mutate(rng: random.Random, body: bytes) -> bytes:
    """1–8 random byte flips, insertions or deletions."""
    data = bytearray(body)
    for _ in range(rng.randrange(1, 9)):
        at = rng.randrange(len(data)) if data else 0
        op = rng.randrange(3)
        if op == 0 and data:
            data[at] = rng.randrange(256)
        elif op == 1:
            data.insert(at, rng.randrange(256))
        elif data:
            del data[at]
    return bytes(data)


# --- sending ---------------------------------------------------------------------------------------------------
def answer_label(status: int, payload: bytes, path: str) -> str:
    """``"200"``, ``"413"``, …; on the Zidium route a 200 carries its Code: ``"200 Code 10"``."""
    if path.startswith("/api/") and status == 200:
        try:
            return f"200 Code {json.loads(payload)['Code']}"
        except (ValueError, KeyError, TypeError):  # invalid output of the gateway: counted as its own answer
            return "200 without a Code"
    return str(status)


class Client:
    """One keep-alive connection; reconnects when the gateway closed it (after a 413, or idle)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, req: Request) -> str:
        if req.cut:
            return self.cut_upload(req)
        while True:
            fresh = self.conn is None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request("POST", req.path, body=req.body, headers=req.headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:  # the gateway closed or reset the connection
                self.close()
                if fresh:  # not a keep-alive connection gone stale meanwhile: this request's own answer
                    return f"no answer ({type(exc).__name__})"
                continue  # once more on a fresh connection
            if response.will_close:
                self.close()
            return answer_label(response.status, payload, req.path)

    def cut_upload(self, req: Request) -> str:
        """Declare the whole body, send half of it, close the write side: the gateway must not wait forever."""
        head = (f"POST {req.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(req.body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "Connection: close\r\n\r\n").encode()
        with socket.create_connection((self.host, self.port), timeout=60) as sock:
            try:
                sock.sendall(head + req.body[: len(req.body) // 2])
                sock.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError as exc:  # reset: the gateway dropped it, which is allowed
                return f"no answer ({type(exc).__name__})"
        if not data.startswith(b"HTTP/1."):
            return "closed without an answer"
        return data.split(b" ", 2)[1].decode()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def slow_client(host: str, port: int, dribble: bool, stop: threading.Event) -> tuple[str, float]:
    """Open a connection and send nothing (idle) or request headers a byte a second (dribble) until the gateway
    answers or closes it, the load ends, or ``SLOW_GIVE_UP_S`` pass. Returns (outcome, seconds held)."""
    head = (f"POST /v3/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JSON_TYPE}\r\nContent-Length: 2\r\n"
            "X-Pad: " + "x" * 200 + "\r\n\r\n[]").encode()
    t0 = time.monotonic()
    sent = 0
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(1.0)
        while time.monotonic() - t0 < SLOW_GIVE_UP_S:
            if stop.is_set():
                return "load ended first", time.monotonic() - t0
            try:
                if dribble and sent < len(head):
                    sock.sendall(head[sent:sent + 1])
                    sent += 1
                data = sock.recv(4096)
            except socket.timeout:  # nothing from the gateway yet: keep holding
                continue
            except OSError:  # reset by the gateway: it bounded this client
                return "dropped by the gateway", time.monotonic() - t0
            if not data:
                return "closed by the gateway", time.monotonic() - t0
            if data.startswith(b"HTTP/1."):
                return f"answered {data.split(b' ', 2)[1].decode()}", time.monotonic() - t0
    return f"still open after {SLOW_GIVE_UP_S:.0f} s", time.monotonic() - t0


# --- the phase -------------------------------------------------------------------------------------------------
def gateway_rss_mb(gw: Gateway) -> float:
    return sum(status_kb(pid, "VmRSS") or 0 for pid in gw.proc.tree()) / 1024


def run(cfg: BenchConfig, procs: Processes, settings: Settings, home: Path) -> dict[str, Any]:
    """The whole soak on fresh topics and tables; returns its figures. Blocks for minutes at scale 1."""
    from deploy.migrate import client

    home.mkdir(parents=True, exist_ok=True)
    gw_settings = replace(settings, home=str(home), keys_file=str(home / "keys.json"))
    other_key = create_key(gw_settings, OTHER_ACCOUNT)
    # A port of the caller's choosing when it set one (EVENTPIPE_HTTP_PORT), else a free one; workers likewise.
    port = settings.http_port if settings.http_port != Settings.http_port else None
    metrics = settings.consumer_metrics_port if settings.consumer_metrics_port != Settings.consumer_metrics_port \
        else None
    workers = [procs.start(f"soak-consumer-{w}", python_module("consumers", w),
                           app_env(settings, EVENTPIPE_CONSUMER_METRICS_PORT=str(metrics + n if metrics else 0)))
               for n, w in enumerate(("events", "sessions", "joins", "deadletters", "components"))]
    gw = Gateway(procs, gw_settings, home, name="gateway-soak", account=ACCOUNT, port=port)
    traffic = Traffic(cfg.seed, {ACCOUNT: gw.key, OTHER_ACCOUNT: other_key}, load_event_types(settings.event_types_file))
    plan = schedule(cfg)
    host = "127.0.0.1"
    gw_port = gw.settings.http_port

    # one valid batch first: the gateway's producers connect before the "before" figures are taken
    warm = traffic.request(KINDS[1], -1)
    if Client(host, gw_port).send(warm) != "200":
        raise BenchError(f"soak: the warm-up batch was refused; gateway log {gw.proc.log}:\n{gw.proc.tail()}")
    rss_before = gateway_rss_mb(gw)
    gw_children = set(children(gw.proc.pid))

    lock = threading.Lock()
    answers: dict[str, dict[str, int]] = {}
    accepted: set[str] = set(warm.ids)
    maybe: set[str] = set()  # ids of batches answered 503 or not at all: in Kafka or not, both are allowed
    next_index = iter(range(len(plan)))
    failures: list[str] = []

    def sender() -> None:
        client = Client(host, gw_port)
        try:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                kind = plan[i]
                req = traffic.request(kind, i)
                label = client.send(req)
                with lock:
                    per = answers.setdefault(kind.name, {})
                    per[label] = per.get(label, 0) + 1
                    if req.ids and label == "200":
                        accepted.update(req.ids)
                    elif req.ids and (label == "503" or label.startswith("no answer")):
                        maybe.update(req.ids)
        except Exception as exc:  # a bug in the soak itself: stop this sender, report it
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    stop = threading.Event()
    slow: list[tuple[str, str, float]] = []

    def holder(dribble: bool) -> None:
        while not stop.is_set():
            try:
                outcome, held = slow_client(host, gw_port, dribble, stop)
            except OSError as exc:  # could not even connect: the gateway's backlog is full
                outcome, held = f"could not connect ({type(exc).__name__})", 0.0
                time.sleep(1)
            with lock:
                slow.append(("dribble" if dribble else "idle", outcome, held))

    holders = [threading.Thread(target=holder, args=(d,), daemon=True)
               for d in [False] * SLOW_IDLE + [True] * SLOW_DRIBBLE]
    for t in holders:
        t.start()
    say(f"soak: {len(plan)} requests over {CONNECTIONS} connections, {len(holders)} slow clients beside them")
    t0 = time.monotonic()
    senders = [threading.Thread(target=sender, daemon=True) for _ in range(CONNECTIONS)]
    for t in senders:
        t.start()
    last = time.monotonic()
    while any(t.is_alive() for t in senders):
        time.sleep(0.5)
        if time.monotonic() - last > 30:
            last = time.monotonic()
            with lock:
                done = sum(sum(v.values()) for v in answers.values())
            say(f"soak: {done}/{len(plan)} answered, gateway RSS {gateway_rss_mb(gw):.0f} MB")
    load_s = time.monotonic() - t0
    stop.set()
    for t in holders:
        t.join(SLOW_GIVE_UP_S + 10)
    rss_after = gateway_rss_mb(gw)
    replaced = len(set(children(gw.proc.pid)) - gw_children)
    if failures:
        raise BenchError(f"soak: a sender failed: {failures[0]}")

    ch = client(settings, settings.clickhouse_database)
    try:
        check = exactly_once(ch, accepted, maybe, lambda: [w for w in workers if w.popen.poll() is not None])
    finally:
        ch.disconnect()
    exited = [w.name for w in workers if w.popen.poll() is not None]

    statuses: dict[str, int] = {}
    unexpected: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        for label, n in answers.get(kind.name, {}).items():
            statuses[label] = statuses.get(label, 0) + n
            ok = (not label.startswith("5")) if kind.expected == NOT_5XX else label in kind.expected
            if not ok:
                unexpected.setdefault(kind.name, {})[label] = n
    server_errors = sum(n for label, n in statuses.items() if label.startswith("5") and label != "503")
    slow_outcomes: dict[str, dict[str, float]] = {}
    for what, outcome, held in slow:
        entry = slow_outcomes.setdefault(f"{what}: {outcome}", {"count": 0, "max_held_s": 0.0})
        entry["count"] += 1
        entry["max_held_s"] = round(max(entry["max_held_s"], held), 1)
    return {
        "requests": len(plan), "load_s": load_s, "requests_per_s": len(plan) / load_s,
        "statuses": dict(sorted(statuses.items(), key=lambda kv: -kv[1])), "by_kind": answers,
        "expected": {k.name: sorted(k.expected) if k.expected != NOT_5XX else NOT_5XX for k in KINDS},
        "unexpected": unexpected, "server_errors_not_503": server_errors,
        "slow_clients": slow_outcomes, "slow_clients_held": len(slow), "slow_give_up_s": SLOW_GIVE_UP_S,
        "slow_clients_unbounded": sum(1 for _, outcome, _ in slow if outcome.startswith("still open")),
        "gateway_rss_before_mb": rss_before, "gateway_rss_after_mb": rss_after,
        "gateway_workers_replaced": replaced, "consumer_workers_exited": exited,
        "worker_restarts": replaced + len(exited), **check,
    }


def exactly_once(ch: Any, accepted: set[str], maybe: set[str], dead: Callable[[], list]) -> dict[str, Any]:
    """Wait until every accepted event is in events_final (or ``DRAIN_S``), then check it id by id. Blocks."""
    def count() -> int:
        return ch.execute("SELECT count() FROM events_final WHERE account_id = %(a)s", {"a": ACCOUNT})[0][0]

    t0 = time.monotonic()
    try:
        wait_for(lambda: bool(dead()) or count() >= len(accepted), DRAIN_S, "soak: accepted events in events_final")
    except BenchError as exc:
        say(str(exc))
    drained_s = time.monotonic() - t0
    rows = ch.execute("SELECT event_id, count() FROM events_final WHERE account_id = %(a)s GROUP BY event_id",
                      {"a": ACCOUNT})
    found = {event_id for event_id, _ in rows}
    twice = sum(1 for _, n in rows if n > 1)
    raw = ch.execute("SELECT count() FROM events WHERE account_id = %(a)s", {"a": ACCOUNT})[0][0]
    other = ch.execute("SELECT count(), uniqExact(event_id) FROM events_final WHERE account_id = %(a)s",
                       {"a": OTHER_ACCOUNT})[0]
    return {"accepted_events": len(accepted), "events_final": len(found), "missing": len(accepted - found),
            "duplicated": twice, "not_accepted_but_present": len(found - accepted - maybe),
            "maybe_events": len(maybe), "raw_event_rows": raw, "drain_s": drained_s,
            "mutated_accepted_events": other[0], "mutated_duplicated": other[0] - other[1],
            "exactly_once": not (accepted - found) and not twice and not (found - accepted - maybe)}
