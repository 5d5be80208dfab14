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

**Fencing** (a worker that stalls — SIGSTOP, a long GC, a frozen VM — loses its partitions and wakes up still
writing; ``tests/integration/consumers/test_recovery.py``). Nothing stops it from writing: its Kafka commit is
refused, but its rows and state reach ClickHouse first. They are harmless because a machine is a function of the
partition's records in offset order, and every row's version is the offset whose processing produced it: the
row a stale writer writes with version v is the very row any owner writes with version v (same content), and
each key's newest row — the one restore reads — is at least as new as anything the stale writer knew. A stale
checkpoint loses the same way (its version is its next offset). So the stale writer can add rows, never move a
key backwards; what this relies on is that no row is ever versioned by anything but the offset (wall-clock
versions would let a stale write win) and that restore reads nothing below the compaction floor (below).

**Compaction.** Without it every key a partition ever had keeps rows, and restore reads them all. When a
partition's rows written since its last compaction exceed twice its live keys (and
``EVENTPIPE_STATE_COMPACT_MIN_ROWS``), the owner, right after a flush (state as of ``next_offset``), writes a
*snapshot*: every live key's state and every tombstone a late event can still reach (below), all with version
``V = next_offset − 1``, then — only once all of them are in — a checkpoint with ``floor = V``
(snapshot rows without it, after a crash, are copies of states as of V, superseded like any row).
Restore and tombstone look-ups read only rows with ``version >= floor`` (``floor`` = the largest any checkpoint
row of the partition carries, so a stale checkpoint cannot lower it); then an ``ALTER TABLE … DELETE`` removes the
rows below ``V``. Version V is safe for snapshot rows: the state of a key after offset V is its newest row's
content, and a key that changed at V has a row of version V with the same content. Rows below the floor are
never read, so it does not matter when (ClickHouse 18.16 mutations run asynchronously, part by part) or whether
the delete gets done, nor that a stale writer adds rows below it later: no compaction can bring an older version
back.

**Forgotten tombstones** (sessions; ``Processor.history``). A session's tombstone answers late events for good:
within the late horizon it takes them in, beyond it it makes them be ignored. Kept forever, it would leave a row
per session ever evicted. So the snapshot leaves out a tombstone once ``forgettable`` (the watermark is so far
past the key's last event that every event not too late is beyond the horizon): all it still says is "seen",
and the output table says that too. A look-up that finds no tombstone in a compacted partition asks the output
table for the key's row with ``row_version <= floor``; found, the key is ``forgotten`` and its events are ignored.
That row exists: every evicted key had a visible row, written (step 1) before its eviction's state (step 3), so
at a version at most the eviction's offset, below the floor of the compaction that dropped the tombstone. And it
proves just that: rows are versioned by offsets and content-deterministic (see Fencing), so a row at or below the
floor is one the partition's history before the floor wrote, never a row of an unfinished batch beyond it (a
replay after a crash starts above the floor); a key seen before the floor that is neither live nor has a
tombstone had its tombstone dropped, past its horizon. This relies on the output table keeping its rows (no
TTL, no manual deletes) and on the topic's offsets never starting over under the same table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Callable

CHECKPOINT_KEY = ""
STATE_COLUMNS = ("consumer_group", "topic", "partition", "key", "state", "version", "deleted")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    watermark: int
    next_offset: int
    floor: int = 0  # rows below this version are garbage (see Compaction above); 0: never compacted

    def encode(self) -> bytes:
        # compact JSON: ClickHouse reads "floor" with visitParamExtractUInt, which wants no space after the colon
        return json.dumps({"watermark": self.watermark, "next_offset": self.next_offset, "floor": self.floor},
                          separators=(",", ":")).encode()

    def kafka_commit(self) -> tuple[int, str]:
        """The Kafka commit of this checkpoint: its next offset, with the watermark as metadata (informational)."""
        return self.next_offset, f'{{"watermark":{self.watermark}}}'

    @classmethod
    def decode(cls, raw: bytes) -> "Checkpoint":
        """Raises ValueError/KeyError on a row that is not a checkpoint (a bug or a hand-edited table)."""
        data = json.loads(raw)
        return cls(watermark=int(data["watermark"]), next_offset=int(data["next_offset"]),
                   floor=int(data.get("floor", 0)))


@dataclass(slots=True)
class Restored:
    """What ``consumer_state`` holds for one partition: the checkpoint (None: never written) and the live states.

    ``states`` may be readable once: ``load_state`` streams them from ClickHouse block by block, so that a restore
    never holds all of a partition's states beside the machine it builds from them. Read them through ``iter``:
    ``count`` (states read) and ``rows_read`` (rows ClickHouse read to find them, what compaction keeps flat)
    are final once they have all been read."""

    checkpoint: Checkpoint | None
    states: Iterable[bytes]
    rows_read: int = 0
    count: int = 0

    def __iter__(self) -> Iterator[bytes]:
        for state in self.states:
            self.count += 1
            yield state


@dataclass(frozen=True, slots=True)
class History:
    """Where a processor's output shows that a state key was once seen: ``table``'s row named by ``columns``
    (``identity(key)`` gives their values), versioned by ``version`` — the Kafka offset that wrote it. What a
    look-up falls back on for tombstones that compaction dropped (see Compaction in state.py)."""

    table: str
    columns: tuple[str, ...]
    version: str
    identity: Callable[[str], tuple]


def compaction_due(rows_since: int, live_keys: int, minimum: int) -> bool:
    """Whether a partition that wrote ``rows_since`` state rows since its last compaction (or restore) and holds
    ``live_keys`` should be compacted now: the snapshot costs ``live_keys`` rows, so doing it once the garbage
    outweighs twice that keeps the table within a few times the live state, at a bounded cost per row written."""
    return rows_since >= max(minimum, 2 * live_keys)
