"""The benchmark's one workload: a seeded, reproducible stream of v3 events and Zidium join records.

Every measurement of ``make bench`` is fed from here, so the gateway, the bare producers, Kafka's own perf tool
(at the same mean record size), the consumers and ClickHouse's Kafka engine all see the same records.

The event stream looks like mobile-app analytics (the seed document's shape): about 80 % of events belong to
sessions — a ``START``, zero to four ``UPDATE``s, an ``END``, interleaved with a couple of hundred other open
sessions — and the rest are single events without a session. Each event carries two to six entities (strings,
numbers, booleans, a small object now and then), so a JSON event is ~250 bytes and its Avro frame ~200 bytes.
Join records come from a fixed pool of components × types, so most of them extend an open join window.

Pure: no I/O, no clock. The same ``seed`` gives byte-identical records (``received_at`` is derived, not read).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ACCOUNT = "bench"
EVENT_TYPES = ("APPSTART", "SCREEN", "NETWORK", "BATTERY", "POSITION", "CUSTOM", "BROWSER", "CALL")
SINGLE_TYPES = ("APPCRASH", "APPINSTALL", "APPUPDATE", "SMS", "POSITION", "BATTERY")
APPS = [("BigBrother", "de.thues.bigbrother"), ("Weather", "com.example.weather"), ("Notes", "org.notes.app"),
        ("Maps", "com.maps.client"), ("Chess", "net.chess.mobile"), ("Radio", "fm.radio.player"),
        ("Bank", "com.bank.mobile"), ("Shop", "com.shop.android")]
SCREENS = ("home", "settings", "detail", "search", "profile", "checkout", "list", "map")
IMPORTANCES = ("Success", "Warning", "Alarm", "Unknown")
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_EXTRA_KEYS = ("version", "screen", "battery", "charging", "position", "network", "duration_ms")


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int = 20261123
    account: str = ACCOUNT
    single_share: float = 0.2         # events without a session
    max_updates: int = 4              # UPDATEs per session: uniform 0..max_updates
    open_sessions: int = 200          # sessions interleaved at any time
    base_timestamp: int = 1_763_900_000  # event time of the first event (UNIX seconds)
    components: int = 200             # join records: distinct ComponentIds ...
    join_types: int = 20              # ... × distinct TypeIds


def _uuid4(rng: random.Random) -> str:
    """A version-4-shaped UUID string from ``rng`` (formatted by hand: ``uuid.UUID`` objects are slow)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def dumps_compact(value: Any) -> str:
    """JSON text as entity values travel in the Avro record (compact separators, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Workload:
    """Generates the benchmark's records from one seed. Each method starts from the seed again (reproducible)."""

    def __init__(self, config: WorkloadConfig = WorkloadConfig()) -> None:
        self.config = config

    def _rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.config.seed}:{stream}")

    # --- v3 events (what an HTTP client sends) ---------------------------------------------------------------
    def iter_events(self, stream: str = "events") -> Iterator[dict[str, Any]]:
        """An endless stream of v3 event dicts as a client POSTs them. Sessions interleave; timestamps grow."""
        cfg, rng = self.config, self._rng(stream)
        ts = cfg.base_timestamp
        open_: list[dict[str, Any]] = []  # {"session", "type", "app", "updates_left", "device"}
        while True:
            r = rng.random()
            ts += int(r * 5) // 2  # 0, 0, 1, 1, 2 seconds
            if rng.random() < cfg.single_share:
                yield {"action": rng.choice(("START", "UPDATE")), "type": rng.choice(SINGLE_TYPES),
                       "timestamp": ts, "entities": self._entities(rng, rng.choice(APPS), None)}
                continue
            if len(open_) < cfg.open_sessions:
                s = {"session": "".join(rng.choices(_ALNUM, k=10 + int(rng.random() * 7))),
                     "type": rng.choice(EVENT_TYPES), "app": rng.choice(APPS),
                     "updates_left": rng.randint(0, cfg.max_updates)}
                open_.append(s)
                action = "START"
            else:
                i = int(rng.random() * len(open_))
                s = open_[i]
                if s["updates_left"] > 0:
                    s["updates_left"] -= 1
                    action = "UPDATE"
                else:
                    open_[i] = open_[-1]
                    open_.pop()
                    action = "END"
            yield {"action": action, "type": s["type"], "timestamp": ts, "session": s["session"],
                   "entities": self._entities(rng, s["app"], action)}

    def _entities(self, rng: random.Random, app: tuple[str, str], action: str | None) -> list[dict[str, Any]]:
        entities = [{"key": "app", "value": app[0]}, {"key": "package", "value": app[1]}]
        for key in rng.sample(_EXTRA_KEYS, int(rng.random() * 5)):
            r = rng.random()
            if key == "version":
                value: Any = f"{int(r * 9) + 1}.{int(r * 997) % 21}.{int(r * 99991) % 100}"
            elif key == "screen":
                value = SCREENS[int(r * len(SCREENS))]
            elif key == "battery":
                value = int(r * 100) + 1
            elif key == "charging":
                value = r < 0.3
            elif key == "position":
                value = {"lat": round(r * 160 - 80, 5), "lon": round(rng.random() * 340 - 170, 5)}
            elif key == "network":
                value = ("wifi", "lte", "5g", "none")[int(r * 4)]
            else:
                value = int(r * 600_000) + 10
            entities.append({"key": key, "value": value})
        return entities

    def events(self, n: int, stream: str = "events") -> list[dict[str, Any]]:
        """The first ``n`` events of a stream."""
        it = self.iter_events(stream)
        return [next(it) for _ in range(n)]

    # --- join records (what a Zidium client sends) ----------------------------------------------------------
    def iter_joins(self, stream: str = "joins") -> Iterator[dict[str, Any]]:
        """An endless stream of JoinEvents records; most of them extend a window opened before them."""
        cfg, rng = self.config, self._rng(stream)
        components = [_uuid4(rng) for _ in range(cfg.components)]
        types = [_uuid4(rng) for _ in range(cfg.join_types)]
        start_ms = self.config.base_timestamp * 1000
        while True:
            start_ms += rng.randint(0, 2000)
            yield {"ComponentId": rng.choice(components), "TypeId": rng.choice(types),
                   "JoinKey": rng.randint(0, 3), "StartDateMs": start_ms,
                   "JoinInterval": rng.choice((600, 600, 600, 60, 0)),
                   "Importance": rng.choice(IMPORTANCES), "Count": rng.choice((1, 1, 1, 2, 5)),
                   "Message": f"check {rng.choice(SCREENS)} returned {rng.randint(100, 599)}",
                   "Version": rng.choice(("1.0.0.0", "1.0.1.0", None))}

    def joins(self, n: int, stream: str = "joins") -> list[dict[str, Any]]:
        it = self.iter_joins(stream)
        return [next(it) for _ in range(n)]

    # --- the Avro records the gateway would publish for them --------------------------------------------------
    def event_records(self, events: list[dict[str, Any]], stream: str = "events", source: str = "kafka"
                      ) -> list[tuple[bytes, dict[str, Any]]]:
        """``(partition key, Avro record dict)`` per event, as a direct producer inside the network writes them."""
        rng = self._rng(stream + ":ids")
        account = self.config.account
        out = []
        for i, e in enumerate(events):
            event_id = _uuid4(rng)
            session = e.get("session")
            parts = [account, session, e["type"]] if session is not None else [account, e["type"]]
            out.append((dumps_compact(parts).encode("utf-8"), {
                "account_id": account, "event_id": event_id, "action": e["action"], "type": e["type"],
                "timestamp": e["timestamp"], "session": session,
                "entities": [{"key": x["key"], "value": dumps_compact(x["value"])} for x in e["entities"]],
                "received_at": (e["timestamp"] * 1000) + 250 + i % 1000,
                "source": source}))
        return out

    def join_records(self, joins: list[dict[str, Any]], stream: str = "joins", source: str = "kafka"
                     ) -> list[tuple[bytes, dict[str, Any]]]:
        rng = self._rng(stream + ":ids")
        account = self.config.account
        out = []
        for j in joins:
            record_id = _uuid4(rng)
            out.append((dumps_compact([account, j["ComponentId"], j["TypeId"]]).encode("utf-8"), {
                "account_id": account, "record_id": record_id, "event_id": None,
                "component_id": j["ComponentId"], "type_id": j["TypeId"], "join_key": j["JoinKey"],
                "start_date": j["StartDateMs"], "join_interval": float(j["JoinInterval"]),
                "importance": j["Importance"], "count": j["Count"], "message": j["Message"],
                "version": j["Version"], "received_at": j["StartDateMs"] + 500, "source": source}))
        return out


def json_row(record: dict[str, Any]) -> dict[str, Any]:
    """One Avro event record as the JSONEachRow row ClickHouse's Kafka engine reads (anchor C)."""
    return {"account_id": record["account_id"], "event_id": record["event_id"], "action": record["action"],
            "type": record["type"], "timestamp": record["timestamp"], "session": record["session"] or "",
            "has_session": 0 if record["session"] is None else 1,
            "entity_keys": [x["key"] for x in record["entities"]],
            "entity_values": [x["value"] for x in record["entities"]],
            "received_at_ms": record["received_at"], "source": record["source"]}


def batches(events: list[dict[str, Any]], size: int = 100) -> list[list[dict[str, Any]]]:
    """Consecutive batches of ``size`` events (the last one may be shorter)."""
    return [events[i:i + size] for i in range(0, len(events), size)]
