"""How state that outlives a batch survives restarts, ``kill -9``, rebalances and replays — pure helpers.

The sessions and joins workers keep one state machine per assigned input partition (``SessionPairer`` /
``JoinWindows``). Everything needed to rebuild a machine lives in the ClickHouse table ``consumer_state``
(``schemas/clickhouse/005_consumer_state.sql``), a ReplacingMergeTree(version) keyed by
``(consumer_group, topic, partition, key)``:

* every ``Change`` a machine returns becomes one row: ``key``, ``state`` (the machine's opaque bytes),
  ``version`` = the Kafka offset of the record that caused it, ``deleted`` = 1 when ``state`` is None (evicted) —
  then ``state`` holds the change's ``tombstone`` (sessions: the evicted state, looked up by key when a late
  UPDATE/END of that session comes; see the recall protocol in sessions.py), or is empty;
* the reserved key ``''`` is the partition **checkpoint**: ``{"watermark": w, "next_offset": n}`` with
  ``version = n`` — the machine's event-time watermark and the next offset to read after this batch.

A write step (``consumers/worker.py``) runs in this order, each step retried until it succeeds:

1. output rows → ``sessions`` / ``joined_events`` (idempotent: ReplacingMergeTree by ``row_version``);
2. dead letters → the dead-letter topic (acknowledged; the sink de-duplicates by content);
3. the batch's state rows **and** the checkpoints of its partitions → ``consumer_state`` in ONE insert block
   (the table has no partition key, so the block lands as one part: all of it or none of it);
4. Kafka commit of ``next_offset`` per partition, with the watermark in the commit metadata (informational).

On assignment a partition is paused until its machine is restored: the latest row per key (``argMax`` by
``version``) gives the live states and the checkpoint; the consumer seeks to ``checkpoint.next_offset`` (or the
committed offset, or the beginning, when there is no checkpoint yet) and resumes. States and checkpoint come from
the same atomic insert, so the restored machine is exactly the one that had consumed everything before
``next_offset`` — a crash between steps 1–3 replays from the previous checkpoint and rewrites identical rows
(same inputs, same offsets, same ``row_version``), a crash between 3 and 4 is covered by seeking to the
checkpoint rather than the (older) committed offset. On revocation the worker flushes and commits, then drops
the machine; if the flush cannot be done (ClickHouse down), the batch is dropped uncommitted and the next owner
replays it from the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

CHECKPOINT_KEY = ""
STATE_COLUMNS = ("consumer_group", "topic", "partition", "key", "state", "version", "deleted")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    watermark: int
    next_offset: int

    def encode(self) -> bytes:
        return json.dumps({"watermark": self.watermark, "next_offset": self.next_offset}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Checkpoint":
        """Raises ValueError/KeyError on a row that is not a checkpoint (a bug or a hand-edited table)."""
        data = json.loads(raw)
        return cls(watermark=int(data["watermark"]), next_offset=int(data["next_offset"]))


@dataclass(frozen=True, slots=True)
class Restored:
    """What ``consumer_state`` holds for one partition: live states and the checkpoint (None: never written)."""

    checkpoint: Checkpoint | None
    states: tuple[bytes, ...]


def restored_from_rows(rows: Iterable[tuple[bytes, bytes, int]]) -> Restored:
    """Build ``Restored`` from ``(key, latest state, latest deleted)`` rows of one partition."""
    checkpoint = None
    states = []
    for key, state, deleted in rows:
        if key == CHECKPOINT_KEY.encode():
            checkpoint = Checkpoint.decode(state)
        elif not deleted:
            states.append(state)
    return Restored(checkpoint=checkpoint, states=tuple(states))
