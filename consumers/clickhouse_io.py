"""The consumers' one ClickHouse boundary (the only consumers module importing clickhouse-driver).

Every call blocks on the network. Failures are sorted into two kinds: ``Unavailable`` (transient — server down,
restarting, overloaded, tables not there yet: the worker pauses and retries with backoff) and anything else
(a bug, e.g. a row that does not fit its column: it propagates and the process crashes loudly).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Iterable, Sequence

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.errors import (NetworkError, PartiallyConsumedQueryError, ServerException,
                                     SocketTimeoutError, UnexpectedPacketFromServerError,
                                     UnknownPacketFromServerError)

from eventpipe.settings import Settings

from .errors import Unavailable
from .state import CHECKPOINT_KEY, STATE_COLUMNS, Checkpoint, Restored

log = logging.getLogger(__name__)

SNAPSHOT_BLOCK = 50_000  # rows per INSERT of a compaction snapshot: bounds the memory it takes

# Server error codes that mean "try again later", not "your query is wrong".
TIMEOUT_EXCEEDED = 159  # also what an ON CLUSTER query answers when a host has not run it in time
TRANSIENT_CODES = {
    60,   # UNKNOWN_TABLE: migrations not applied yet, or the server is still loading tables
    81,   # UNKNOWN_DATABASE: ditto
    TIMEOUT_EXCEEDED,
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209, 210,  # SOCKET_TIMEOUT, NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    425,  # SYSTEM_ERROR
    # on a cluster: a replica or a whole shard away, ZooKeeper away, a quorum not (yet) reached
    225,  # NO_ZOOKEEPER
    279,  # ALL_CONNECTION_TRIES_FAILED (every replica of a shard down)
    285,  # TOO_FEW_LIVE_REPLICAS (insert_quorum larger than the live replicas)
    286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE (18.16 runs one quorum insert per table at a time)
    289,  # REPLICA_IS_NOT_IN_QUORUM (a sequentially consistent read on a replica still behind)
    319,  # UNKNOWN_STATUS_OF_INSERT (the quorum was not reached in time: the retry rewrites the same rows)
    999,  # KEEPER_EXCEPTION
}


# The connection broke (server down, restarting, a half-read reply): reconnect and retry. Every other client-side
# error (type mismatch, unknown type, ...) is a bug in the rows we built.
TRANSPORT_ERRORS = (NetworkError, SocketTimeoutError, UnexpectedPacketFromServerError, UnknownPacketFromServerError,
                    PartiallyConsumedQueryError, OSError, EOFError)


# On a cluster every insert goes through a Distributed table with insert_distributed_sync: the INSERT returns only
# once each shard's block is stored on a replica of that shard (an asynchronous Distributed insert would return
# with the rows queued on the local disk of whichever node received them, so "committed after the write" would
# lie). Letting ClickHouse route the rows, rather than computing the shard here and writing the local tables,
# keeps one definition of the sharding key — the DDL's — and its failover among a shard's replicas.
DISTRIBUTED_WRITE = {"insert_distributed_sync": 1}
# consumer_state on a cluster: a write counts once it is on `quorum` replicas of its shard, and a restore reads
# with select_sequential_consistency, which fails (REPLICA_IS_NOT_IN_QUORUM, retried) on a replica that lacks a
# quorum write instead of returning an older state. The timeout bounds a write to a lagging replica; the retry
# writes the same rows (same versions), so a late success of the first attempt changes nothing.
QUORUM_TIMEOUT_MS = 20_000
CONSISTENT_READ = {"select_sequential_consistency": 1}
DDL_WAIT_S = 10  # how long a compaction's ON CLUSTER delete waits for every replica (then it stays queued)


def client_for(settings: Settings) -> Client:
    """A client of EVENTPIPE_CLICKHOUSE_HOST, failing over to EVENTPIPE_CLICKHOUSE_ALT_HOSTS in turn."""
    extra = {"alt_hosts": settings.clickhouse_alt_hosts} if settings.clickhouse_alt_hosts else {}
    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                  user=settings.clickhouse_user, password=settings.clickhouse_password,
                  database=settings.clickhouse_database, connect_timeout=3,
                  send_receive_timeout=60, sync_request_timeout=5, **extra)


class ClickHouseStore:
    def __init__(self, settings: Settings) -> None:
        self.database = settings.clickhouse_database
        self.client = client_for(settings)
        self.write_settings = DISTRIBUTED_WRITE if settings.clustered else {}
        self.state_write_settings = {**DISTRIBUTED_WRITE, "insert_quorum": settings.clickhouse_state_quorum,
                                     "insert_quorum_timeout": QUORUM_TIMEOUT_MS} if settings.clustered else {}
        self.state_read_settings = CONSISTENT_READ if settings.clustered else {}
        self.cluster = settings.clickhouse_cluster

    def _execute(self, query: str, params: object = None, **kwargs: object) -> list:
        try:
            return self.client.execute(query, params, **kwargs)
        except (ClickHouseError, OSError, EOFError) as exc:
            transient = (isinstance(exc, TRANSPORT_ERRORS)
                         or isinstance(exc, ServerException) and exc.code in TRANSIENT_CODES)
            if not transient:
                raise  # bug: a query or row ClickHouse rejects for good
            self.client.disconnect()  # transient: the next call reconnects
            detail = " ".join(str(exc).split("Stack trace")[0].split())[:300]
            raise Unavailable(f"{type(exc).__name__}: {detail}", getattr(exc, "code", None)) from None

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple], one_block: bool = False,
               extra: dict | None = None) -> float:
        """Insert rows in one INSERT (``one_block``: also in one block, so a table without a partition key gets
        all of them in one part or none — on a cluster: one part per shard); returns seconds taken. ``extra``:
        more query settings. Blocks; raises Unavailable."""
        started = time.monotonic()
        names = ", ".join(f"`{c}`" for c in columns)
        settings = {**self.write_settings, **(extra or {})}
        if one_block:
            settings["insert_block_size"] = max(1, len(rows))
        self._execute(f"INSERT INTO {table} ({names}) VALUES", rows, types_check=False, settings=settings or None)
        return time.monotonic() - started

    def write_state(self, group: str, topic: str, changes: Iterable[tuple[int, str, bytes, bool, int]],
                    checkpoints: dict[int, bytes], versions: dict[int, int]) -> float:
        """One INSERT block of state rows ``(partition, key, state, deleted, version)`` — a deleted key's state
        is its tombstone, or empty — and the partitions' checkpoints: atomic, because ``consumer_state`` has no
        partition key. Blocks; raises Unavailable."""
        rows = [(group, topic, p, key, state, version, 1 if deleted else 0)
                for p, key, state, deleted, version in changes]
        rows += [(group, topic, p, CHECKPOINT_KEY, raw, versions[p], 0) for p, raw in checkpoints.items()]
        return self.insert("consumer_state", STATE_COLUMNS, rows, one_block=True, extra=self.state_write_settings)

    def load_state(self, group: str, topic: str, partition: int) -> Restored:
        """The latest row per key of one partition, at or above its compaction floor (state.py). Blocks; raises
        Unavailable."""
        where = "consumer_group = %(g)s AND topic = %(t)s AND partition = %(p)s"
        params = {"g": group, "t": topic, "p": partition}
        # the floor is the largest any checkpoint row carries: a stale writer's older checkpoint cannot lower it
        ((raw, floor, found),) = self._execute(
            f"SELECT argMax(state, version), max(visitParamExtractUInt(state, 'floor')), count() "
            f"FROM consumer_state WHERE {where} AND key = ''", params,
            settings={"strings_as_bytes": True, **self.state_read_settings})
        read = self.client.last_query.progress.rows
        states = self._execute(
            f"SELECT argMax(state, version) FROM consumer_state WHERE {where} AND key != '' "
            f"AND version >= %(floor)s GROUP BY key HAVING argMax(deleted, version) = 0",
            {**params, "floor": floor}, settings={"strings_as_bytes": True, **self.state_read_settings}, columnar=True)
        read += self.client.last_query.progress.rows
        checkpoint = None
        if found:
            last = Checkpoint.decode(raw)
            checkpoint = Checkpoint(last.watermark, last.next_offset, floor)
        return Restored(checkpoint=checkpoint, states=tuple(states[0]) if states else (), rows_read=read)

    def load_tombstones(self, group: str, topic: str, lookups: dict[int, list[str]],
                        floors: dict[int, int]) -> dict[int, list[bytes]]:
        """The tombstones of evicted keys, per partition: the latest row (at or above the partition's compaction
        floor) of each key in ``lookups`` when it is a delete that kept its state. One query per partition (a
        primary-key range each). Blocks; raises Unavailable."""
        found: dict[int, list[bytes]] = {}
        for partition, keys in lookups.items():
            rows = self._execute(
                "SELECT argMax(state, version) AS s FROM consumer_state "
                "WHERE consumer_group = %(g)s AND topic = %(t)s AND partition = %(p)s AND key IN %(keys)s "
                "AND version >= %(floor)s GROUP BY key HAVING argMax(deleted, version) = 1 AND s != ''",
                {"g": group, "t": topic, "p": partition, "keys": tuple(keys), "floor": floors.get(partition, 0)},
                settings={"strings_as_bytes": True, **self.state_read_settings})
            found[partition] = [row[0] for row in rows]
        return found

    def all_tombstones(self, group: str, topic: str, partition: int, floor: int) -> list[tuple[str, bytes]]:
        """Every ``(key, tombstone)`` of one partition at or above ``floor`` (what a compaction must consider
        keeping). Blocks; raises Unavailable."""
        rows = self._execute(
            "SELECT key, argMax(state, version) AS s FROM consumer_state "
            "WHERE consumer_group = %(g)s AND topic = %(t)s AND partition = %(p)s AND key != '' "
            "AND version >= %(floor)s GROUP BY key HAVING argMax(deleted, version) = 1 AND s != ''",
            {"g": group, "t": topic, "p": partition, "floor": floor},
            settings={"strings_as_bytes": True, **self.state_read_settings})
        return [(key.decode("utf-8", "surrogatepass"), state) for key, state in rows]

    def compact(self, group: str, topic: str, partition: int, live: Iterable[tuple[str, bytes]],
                tombstones: Iterable[tuple[str, bytes]], checkpoint: Checkpoint) -> int:
        """Write the snapshot of one partition — ``live`` states and the ``tombstones`` still needed, all with
        version ``checkpoint.floor`` — in blocks of ``SNAPSHOT_BLOCK`` rows, then ``checkpoint`` (which raises the
        floor) on its own, then ask ClickHouse to delete the rows below the floor: a mutation, asynchronous, and
        never read again whether done or not (see state.py). Snapshot rows without their checkpoint (a crash in
        between) are copies of states as of the floor, superseded like any other row. Returns the snapshot's
        rows. Blocks; raises Unavailable."""
        v, written = checkpoint.floor, 0
        rows = itertools.chain(((group, topic, partition, key, state, v, 0) for key, state in live),
                               ((group, topic, partition, key, state, v, 1) for key, state in tombstones))
        while block := list(itertools.islice(rows, SNAPSHOT_BLOCK)):
            self.insert("consumer_state", STATE_COLUMNS, block, extra=self.state_write_settings)
            written += len(block)
        self.insert("consumer_state", STATE_COLUMNS,
                    [(group, topic, partition, CHECKPOINT_KEY, checkpoint.encode(), checkpoint.next_offset, 0)],
                    extra=self.state_write_settings)
        self._delete_below(group, topic, partition, v)
        return written

    def _delete_below(self, group: str, topic: str, partition: int, floor: int) -> None:
        """Ask ClickHouse to delete the partition's rows below ``floor``. On a cluster the mutation goes to the
        replicated local tables ON CLUSTER (a Distributed table takes no ALTER … DELETE); one replica per shard
        runs it and replication carries it to the others. A replica that is away does not hold the worker up:
        past DDL_WAIT_S ClickHouse leaves the task queued for it (TIMEOUT_EXCEEDED), which is fine — nothing
        reads below the floor, done or not. Blocks; raises Unavailable."""
        where = ("consumer_group = %(g)s AND topic = %(t)s AND `partition` = %(p)s AND version < %(v)s",
                 {"g": group, "t": topic, "p": partition, "v": floor})
        if not self.cluster:
            self._execute("ALTER TABLE consumer_state DELETE WHERE " + where[0], where[1])
            return
        try:
            self._execute(f"ALTER TABLE `{self.database}`.consumer_state_local ON CLUSTER `{self.cluster}` "
                          "DELETE WHERE " + where[0], where[1], settings={"distributed_ddl_task_timeout": DDL_WAIT_S})
        except Unavailable as exc:
            if exc.code != TIMEOUT_EXCEEDED:
                raise
            log.info("state delete queued for a replica that is away", extra={"partition": partition})

    def close(self) -> None:
        self.client.disconnect()
