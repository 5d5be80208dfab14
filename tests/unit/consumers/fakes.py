"""In-memory stand-ins for the worker's three collaborators (Kafka source, ClickHouse store, dead-letter publisher)
and a clock, so the loop's ordering and outage rules can be tested without sockets."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from consumers.errors import Unavailable
from consumers.kafka_io import CommitOutcome
from consumers.processors import Message
from consumers.state import CHECKPOINT_KEY, Checkpoint, Restored
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
        self.answers: list[CommitOutcome] = []
        self.answer_later = False  # hold the answers back (a commit on its way)
        self.joins = 0  # consumers made (the worker joins the group again with a new one when stuck)
        self.on_assigned: Callable[[list[int]], None] = lambda p: None
        self.on_revoked: Callable[[list[int]], None] = lambda p: None

    def factory(self, settings: Any, group: str, topic: str, on_assigned: Callable, on_revoked: Callable) -> "FakeSource":
        self.on_assigned, self.on_revoked = on_assigned, on_revoked
        self.joins += 1
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
        """Answered at once, like kafka-python's (librdkafka's answer comes in a later poll: ``answer_later``)."""
        sent = {p: o for p, (o, _) in offsets.items()}
        if self.commit_fails:
            self.answers.append(CommitOutcome(sent, Unavailable("kafka down")))
            return
        self.journal.append(("commit", dict(offsets)))
        self.commits.update(offsets)
        self.answers.append(CommitOutcome(sent))

    def commit_outcomes(self) -> list[CommitOutcome]:
        if self.answer_later:
            return []
        answers, self.answers = self.answers, []
        return answers

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
        mine = [r for r in self.state_rows if r[:3] == (group, topic, partition)]
        floor = max((Checkpoint.decode(r[4]).floor for r in mine if r[3] == CHECKPOINT_KEY), default=0)
        latest: dict[str, tuple] = {}
        for row in mine:
            if row[5] >= floor and (row[3] not in latest or row[5] >= latest[row[3]][5]):
                latest[row[3]] = row
        checkpoint = latest.pop(CHECKPOINT_KEY, None)
        restored = Checkpoint.decode(checkpoint[4]) if checkpoint else None
        return Restored(checkpoint=restored and Checkpoint(restored.watermark, restored.next_offset, floor),
                        states=tuple(r[4] for r in latest.values() if not r[6]), rows_read=len(mine))

    def _latest(self, group: str, topic: str, partition: int, floor: int) -> dict[str, tuple]:
        latest: dict[str, tuple] = {}
        for row in self.state_rows:
            if row[:3] == (group, topic, partition) and row[5] >= floor and \
                    (row[3] not in latest or row[5] >= latest[row[3]][5]):
                latest[row[3]] = row
        return latest

    def load_tombstones(self, group: str, topic: str, lookups: dict[int, list[str]],
                        floors: dict[int, int]) -> dict[int, dict[str, bytes]]:
        if self.down:
            raise Unavailable("clickhouse down")
        self.journal.append(("lookup", sum(map(len, lookups.values()))))
        found: dict[int, dict[str, bytes]] = {}
        for partition, keys in lookups.items():
            latest = self._latest(group, topic, partition, floors.get(partition, 0))
            found[partition] = {k: r[4] for k, r in latest.items() if k in keys and r[6] == 1 and r[4]}
        return found

    def seen_at_or_below(self, history: Any, lookups: dict[int, list[str]],
                         floors: dict[int, int]) -> dict[int, list[str]]:
        """``history.table``'s rows are tuples in ``history``'s column order first, the version at index 8
        (``sessions``, the one table with a history)."""
        if self.down:
            raise Unavailable("clickhouse down")
        self.journal.append(("history", sum(map(len, lookups.values()))))
        width = len(history.columns)
        return {p: [k for k in keys if any(row[:width] == history.identity(k) and row[8] <= floors[p]
                                           for row in self.tables.get(history.table, []))]
                for p, keys in lookups.items()}

    def all_tombstones(self, group: str, topic: str, partition: int, floor: int) -> list[tuple[str, bytes]]:
        if self.down:
            raise Unavailable("clickhouse down")
        return [(k, r[4]) for k, r in self._latest(group, topic, partition, floor).items()
                if k != CHECKPOINT_KEY and r[6] == 1 and r[4]]

    def compact(self, group: str, topic: str, partition: int, live: Any, tombstones: Any,
                checkpoint: Checkpoint) -> int:
        """Like ClickHouse with a mutation that ran at once: snapshot rows, the checkpoint, then the delete."""
        if self.down:
            raise Unavailable("clickhouse down")
        v = checkpoint.floor
        rows = [(group, topic, partition, k, s, v, 0) for k, s in live]
        rows += [(group, topic, partition, k, s, v, 1) for k, s in tombstones]
        self.journal.append(("compact", len(rows)))
        self.state_rows.extend(rows)
        self.state_rows.append((group, topic, partition, CHECKPOINT_KEY, checkpoint.encode(),
                                checkpoint.next_offset, 0))
        self.state_rows = [r for r in self.state_rows if r[:3] != (group, topic, partition) or r[5] >= v]
        return len(rows)

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
