"""Batching: an accumulator plus a flush policy (size or age), a clock and a retry backoff — no I/O.

A ``Batch`` collects what the processors returned for consecutive records until the policy says flush; it also
remembers how far its flush has got (rows written, dead letters sent, state written), so a flush retried after
an outage resumes at the step that failed instead of redoing the others.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .processors import Message, Outcome


class Clock(Protocol):
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Backoff:
    """Exponential backoff with jitter for transient failures: 0.2 s doubling up to ``cap_s``."""

    initial_s: float = 0.2
    cap_s: float = 5.0
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap_s, self.initial_s * (2 ** self.attempts))
        self.attempts += 1
        return delay * random.uniform(0.75, 1.0)  # jitter: instances do not retry in lock-step

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class Batch:
    """Output of consecutive records of any assigned partitions, not yet written."""

    started_at: float | None = None
    records: int = 0
    keyed_rows: dict[str, tuple] = field(default_factory=dict)   # identity -> last row
    plain_rows: list[tuple] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    # (partition, key) -> (state or tombstone bytes, deleted, version)
    states: dict[tuple[int, str], tuple[bytes, bool, int]] = field(default_factory=dict)
    first_offset: dict[int, int] = field(default_factory=dict)   # partition -> first offset in this batch
    next_offset: dict[int, int] = field(default_factory=dict)    # partition -> last offset + 1
    # progress of the flush, so a retry resumes where it failed
    rows_written: bool = False
    letters_sent: bool = False
    state_written: bool = False

    def add(self, message: Message, outcome: Outcome, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        self.records += 1
        for identity, row in outcome.rows:
            if identity is None:
                self.plain_rows.append(row)
            else:
                self.keyed_rows.pop(identity, None)  # re-insert: dict order stays the order of last change
                self.keyed_rows[identity] = row
        if outcome.dead_letter is not None:
            self.dead_letters.append(outcome.dead_letter)
        for change in outcome.changes:
            deleted = change.state is None
            payload = (change.tombstone or b"") if deleted else change.state
            self.states[(message.partition, change.key)] = (payload, deleted, message.offset)
        self.first_offset.setdefault(message.partition, message.offset)
        self.next_offset[message.partition] = message.offset + 1

    def rows(self) -> list[tuple]:
        return self.plain_rows + list(self.keyed_rows.values())

    def is_due(self, now: float, max_records: int, max_seconds: float) -> bool:
        if self.records == 0 or self.started_at is None:
            return False
        return self.records >= max_records or now - self.started_at >= max_seconds

    def seconds_left(self, now: float, max_seconds: float) -> float:
        """How long the next poll may wait before this batch is due by age."""
        if self.started_at is None:
            return max_seconds
        return max(0.0, max_seconds - (now - self.started_at))
