"""In-memory stand-ins for the worker's three collaborators (Kafka source, ClickHouse store, dead-letter publisher)
and a clock, so the loop's ordering and outage rules can be tested without sockets."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from consumers.errors import Unavailable
from consumers.processors import Message
from consumers.state import CHECKPOINT_KEY, Restored, restored_from_rows
from eventpipe.codec import EVENT

UTC = dt.timezone.utc


def event_bytes(action: str, ts: int, session: str | None = "8nc92io9q", event_id: str = "e", account: str = "acc",
                type_: str = "APPSTART") -> bytes:
    return EVENT.encode({"account_id": account, "event_id": event_id, "action": action, "type": type_,
                         "timestamp": ts, "session": session, "entities": [{"key": "app", "value": '"BigBrother"'}],
                         "received_at": dt.datetime(2026, 11, 23, tzinfo=UTC), "source": "kafka"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeSource:
    """One topic's partitions as lists; remembers pauses, seeks and commits."""

    def __init__(self, topic: str, journal: list) -> None:
        self.topic, self.journal = topic, journal
        self.log: dict[int, list[bytes]] = {}
        self.position: dict[int, int] = {}
        self.assigned: list[int] = []
        self.paused: set[int] = set()
        self.commits: dict[int, tuple[int, str]] = {}
        self.commit_fails = False
        self.on_assigned: Callable[[list[int]], None] = lambda p: None
        self.on_revoked: Callable[[list[int]], None] = lambda p: None

    def factory(self, settings: Any, group: str, topic: str, on_assigned: Callable, on_revoked: Callable) -> "FakeSource":
        self.on_assigned, self.on_revoked = on_assigned, on_revoked
        return self

    def produce(self, partition: int, value: bytes) -> None:
        self.log.setdefault(partition, []).append(value)

    def rebalance(self, partitions: list[int]) -> None:
        self.on_revoked(list(self.assigned))
        self.assigned = sorted(partitions)
        self.paused -= set(range(1000))
        for p in self.assigned:
            self.position[p] = self.commits.get(p, (0, ""))[0]
        self.on_assigned(list(self.assigned))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        out = []
        for p in self.assigned:
            if p in self.paused:
                continue
            while self.position[p] < len(self.log.get(p, [])) and len(out) < max_records:
                offset = self.position[p]
                out.append(Message(self.topic, p, offset, 1_700_000_000_000 + offset, self.log[p][offset]))
                self.position[p] += 1
        return out

    def commit(self, offsets: dict[int, tuple[int, str]]) -> None:
        if self.commit_fails:
            raise Unavailable("kafka down")
        self.journal.append(("commit", dict(offsets)))
        self.commits.update(offsets)

    def committed(self, partition: int) -> int | None:
        return self.commits[partition][0] if partition in self.commits else None

    def assignment(self) -> list[int]:
        return list(self.assigned)

    def pause(self, partitions: list[int]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: list[int]) -> None:
        self.paused.difference_update(partitions)

    def seek(self, partition: int, offset: int | None) -> None:
        self.position[partition] = offset or 0

    def highwater(self, partition: int, fresh: bool = False) -> int | None:
        return len(self.log.get(partition, []))

    def close(self) -> None:
        pass


class FakeStore:
    """ClickHouse as lists of inserted rows; ``down = True`` makes every call fail like an outage."""

    def __init__(self, journal: list) -> None:
        self.journal = journal
        self.tables: dict[str, list[tuple]] = {}
        self.state_rows: list[tuple] = []  # (group, topic, partition, key, state, version, deleted)
        self.down = False

    def insert(self, table: str, columns: Any, rows: list[tuple]) -> float:
        if self.down:
            raise Unavailable("clickhouse down")
        self.journal.append(("insert", table, len(rows)))
        self.tables.setdefault(table, []).extend(rows)
        return 0.001

    def write_state(self, group: str, topic: str, changes: Any, checkpoints: dict[int, bytes],
                    versions: dict[int, int]) -> float:
        if self.down:
            raise Unavailable("clickhouse down")
        rows = [(group, topic, p, key, state, version, 1 if deleted else 0)
                for p, key, state, deleted, version in changes]
        rows += [(group, topic, p, CHECKPOINT_KEY, raw, versions[p], 0) for p, raw in checkpoints.items()]
        self.journal.append(("state", len(rows)))
        self.state_rows.extend(rows)
        return 0.001

    def load_state(self, group: str, topic: str, partition: int) -> Restored:
        if self.down:
            raise Unavailable("clickhouse down")
        latest: dict[str, tuple] = {}
        for row in self.state_rows:
            if row[:3] == (group, topic, partition) and (row[3] not in latest or row[5] >= latest[row[3]][5]):
                latest[row[3]] = row
        return restored_from_rows((k.encode(), r[4], r[6]) for k, r in latest.items())

    def load_tombstones(self, group: str, topic: str, lookups: dict[int, list[str]]) -> dict[int, list[bytes]]:
        if self.down:
            raise Unavailable("clickhouse down")
        self.journal.append(("lookup", sum(map(len, lookups.values()))))
        found: dict[int, list[bytes]] = {}
        for partition, keys in lookups.items():
            latest: dict[str, tuple] = {}
            for row in self.state_rows:
                if row[:3] == (group, topic, partition) and row[3] in keys and \
                        (row[3] not in latest or row[5] >= latest[row[3]][5]):
                    latest[row[3]] = row
            found[partition] = [r[4] for r in latest.values() if r[6] == 1 and r[4]]
        return found

    def final(self, table: str, key_len: int, version_index: int) -> dict[tuple, tuple]:
        """Like ``FINAL``: the row with the greatest version per sorting key."""
        out: dict[tuple, tuple] = {}
        for row in self.tables.get(table, []):
            key = row[:key_len]
            if key not in out or row[version_index] >= out[key][version_index]:
                out[key] = row
        return out

    def close(self) -> None:
        pass


class FakePublisher:
    def __init__(self, journal: list) -> None:
        self.journal = journal
        self.sent: list[dict] = []
        self.down = False

    def send_all(self, letters: list[dict]) -> None:
        if self.down:
            raise Unavailable("kafka down")
        if letters:
            self.journal.append(("dead_letters", len(letters)))
        self.sent.extend(letters)

    def close(self) -> None:
        pass
