"""The consumers' one ClickHouse boundary (the only consumers module importing clickhouse-driver).

Every call blocks on the network. Failures are sorted into two kinds: ``Unavailable`` (transient — server down,
restarting, overloaded, tables not there yet: the worker pauses and retries with backoff) and anything else
(a bug, e.g. a row that does not fit its column: it propagates and the process crashes loudly).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Iterable, Iterator, Sequence

import eventpipe  # noqa: F401  (first: it makes clickhouse-driver's date table lazy)
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.errors import (NetworkError, PartiallyConsumedQueryError, ServerException,
                                     SocketTimeoutError, UnexpectedPacketFromServerError,
                                     UnknownPacketFromServerError)

from eventpipe.settings import Settings

from .errors import Unavailable
from .state import CHECKPOINT_KEY, STATE_COLUMNS, Checkpoint, History, Restored

log = logging.getLogger(__name__)

SNAPSHOT_BLOCK = 50_000  # rows per INSERT of a compaction snapshot: bounds the memory it takes

# Server error codes that mean "try again later", not "your query is wrong".
TIMEOUT_EXCEEDED = 159  # also what an ON CLUSTER query answers when a host has not run it in time
TRANSIENT_CODES = {
    32,   # ATTEMPT_TO_READ_AFTER_EOF: a Distributed insert's connection to a shard broke (that server died)
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
# consumer_state on a cluster. A state write needs no second replica (EVENTPIPE_CLICKHOUSE_STATE_QUORUM, default
# 1), so losing a replica stops no worker; the guarantee moves to the reads. Every read of state — restore, floor,
# tombstone look-ups — goes to one replica of the shard that holds the partition's rows, after SYSTEM SYNC REPLICA
# made that replica fetch every part ZooKeeper's replication log knows of. An insert is in that log before it
# returns, so the replica read has every state write that counted: never an older state. When the only copy of a
# part is on a replica that is away, the sync cannot finish; the read fails over to the next replica, and if
# none can sync it fails (Unavailable: retried) — it waits rather than read something stale. The look-ups in the
# output table that stand in for forgotten tombstones (seen_at_or_below) read every shard the same way.
QUORUM_TIMEOUT_MS = 20_000
SYNC_TIMEOUT_S = 10  # how long one replica may take to catch up before the read tries the next one
DDL_WAIT_S = 10  # how long a compaction's ON CLUSTER delete waits for every replica (then it stays queued)


def client_for(settings: Settings, address: tuple[str, int] | None = None, timeout_s: float = 60) -> Client:
    """A client of EVENTPIPE_CLICKHOUSE_HOST, failing over to EVENTPIPE_CLICKHOUSE_ALT_HOSTS in turn; or of the
    one server at ``address``. ``timeout_s``: how long a socket read or write may wait."""
    host, port = address or (settings.clickhouse_host, settings.clickhouse_port)
    extra = {"alt_hosts": settings.clickhouse_alt_hosts} if settings.clickhouse_alt_hosts and not address else {}
    return Client(host=host, port=port, user=settings.clickhouse_user, password=settings.clickhouse_password,
                  database=settings.clickhouse_database, connect_timeout=3,
                  send_receive_timeout=timeout_s, sync_request_timeout=5, **extra)


class ClickHouseStore:
    def __init__(self, settings: Settings) -> None:
        self.database = settings.clickhouse_database
        self.client = client_for(settings)
        self.write_settings = DISTRIBUTED_WRITE if settings.clustered else {}
        self.state_write_settings = {**DISTRIBUTED_WRITE, "insert_quorum": settings.clickhouse_state_quorum,
                                     "insert_quorum_timeout": QUORUM_TIMEOUT_MS} if settings.clustered else {}
        self.cluster = settings.clickhouse_cluster
        self.replicas = ShardReplicas(settings) if settings.clustered else None
        self.state_rows_read = 0  # rows ClickHouse read for the last state query

    def _execute(self, query: str, params: object = None, **kwargs: object) -> list:
        return run(self.client, query, params, **kwargs)

    def _execute_iter(self, query: str, params: object = None, **kwargs: object) -> Iterator[tuple]:
        return run_iter(self.client, query, params, **kwargs)

    def _state(self, group: str, topic: str, partition: int, query: str, params: dict, **kwargs: object) -> list:
        """Run a read of ``consumer_state`` (``{table}`` in ``query``): on one server as any query, on a cluster
        through ``ShardReplicas``. Blocks; raises Unavailable."""
        if self.replicas is None:
            rows = self._execute(query.format(table="consumer_state"), params, **kwargs)
            self.state_rows_read = self.client.last_query.progress.rows
            return rows
        rows, self.state_rows_read = self.replicas.read(self.client, group, topic, partition,
                                                        query.format(table="consumer_state_local"), params, **kwargs)
        return rows

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
        """The checkpoint of one partition, and its states: the latest row per key at or above its compaction
        floor (state.py), streamed as ClickHouse sends them when they are read (once). Blocks; raises
        Unavailable, reading the checkpoint or the states."""
        where = "consumer_group = %(g)s AND topic = %(t)s AND partition = %(p)s"
        params = {"g": group, "t": topic, "p": partition}
        # the floor is the largest any checkpoint row carries: a stale writer's older checkpoint cannot lower it
        ((raw, floor, found),) = self._state(
            group, topic, partition,
            "SELECT argMax(state, version), max(visitParamExtractUInt(state, 'floor')), count() "
            f"FROM {{table}} WHERE {where} AND key = ''", params, settings={"strings_as_bytes": True})
        checkpoint = None
        if found:
            last = Checkpoint.decode(raw)
            checkpoint = Checkpoint(last.watermark, last.next_offset, floor)
        restored = Restored(checkpoint, (), self.state_rows_read)
        restored.states = self._stream_states(
            restored, group, topic, partition,
            f"SELECT argMax(state, version) FROM {{table}} WHERE {where} AND key != '' "
            f"AND version >= %(floor)s GROUP BY key HAVING argMax(deleted, version) = 0",
            {**params, "floor": floor})
        return restored

    def _stream_states(self, restored: Restored, group: str, topic: str, partition: int, query: str,
                       params: dict) -> Iterator[bytes]:
        """The first column of ``query``'s rows as they come (on a cluster from the replica ``ShardReplicas``
        picks); adds the rows ClickHouse read to ``restored.rows_read`` at the end. Blocks; raises Unavailable."""
        settings = {"strings_as_bytes": True}
        if self.replicas is None:
            client, rows = self.client, self._execute_iter(query.format(table="consumer_state"), params,
                                                           settings=settings)
        else:
            client, rows = self.replicas.stream(self.client, group, topic, partition,
                                                query.format(table="consumer_state_local"), params, settings=settings)
        for (state,) in rows:
            yield state
        restored.rows_read += client.last_query.progress.rows

    def load_tombstones(self, group: str, topic: str, lookups: dict[int, list[str]],
                        floors: dict[int, int]) -> dict[int, dict[str, bytes]]:
        """The tombstones of evicted keys, per partition and key: of each key in ``lookups``, its tombstone if it
        has one (``_tombstones``). One query per partition (a primary-key range each). Blocks; raises
        Unavailable."""
        return {partition: dict(self._tombstones(group, topic, partition, floors.get(partition, 0), keys))
                for partition, keys in lookups.items()}

    def seen_at_or_below(self, history: History, lookups: dict[int, list[str]],
                         floors: dict[int, int]) -> dict[int, list[str]]:
        """The keys in ``lookups`` whose row in ``history.table`` was written at or below their partition's
        compaction floor (``history.version`` <= floor): keys seen before the floor, whose tombstones compaction
        may have dropped (see Compaction in state.py). One query per partition, by the table's sorting key; on a
        cluster, on every shard's local table, from a replica caught up as state reads are (``ShardReplicas``):
        an asynchronous replica could miss a row and the key would start again as new. Blocks; raises
        Unavailable."""
        columns = ", ".join(history.columns)
        seen: dict[int, list[str]] = {}
        for partition, keys in lookups.items():
            named = {history.identity(key): key for key in keys}
            query = (f"SELECT DISTINCT {columns} FROM {{table}} WHERE ({columns}) IN %(ids)s "
                     f"AND {history.version} <= %(floor)s")
            params = {"ids": tuple(named), "floor": floors[partition]}
            if self.replicas is None:
                rows = self._execute(query.format(table=history.table), params)
            else:
                rows = self.replicas.read_every_shard(self.client, f"{history.table}_local",
                                                      query.format(table=f"{history.table}_local"), params)
            seen[partition] = [named[tuple(row)] for row in rows]
        return seen

    def all_tombstones(self, group: str, topic: str, partition: int, floor: int) -> list[tuple[str, bytes]]:
        """Every ``(key, tombstone)`` of one partition at or above ``floor`` (what a compaction must consider
        keeping). Blocks; raises Unavailable."""
        return self._tombstones(group, topic, partition, floor)

    def _tombstones(self, group: str, topic: str, partition: int, floor: int,
                    keys: list[str] | None = None) -> list[tuple[str, bytes]]:
        """``(key, tombstone)`` of the partition's keys (or of ``keys``) whose latest row at or above ``floor`` is
        a delete that kept its state. Blocks; raises Unavailable."""
        rows = self._state(
            group, topic, partition,
            "SELECT key, argMax(state, version) AS s FROM {table} "
            "WHERE consumer_group = %(g)s AND topic = %(t)s AND partition = %(p)s "
            + ("AND key IN %(keys)s " if keys is not None else "AND key != '' ")
            + "AND version >= %(floor)s GROUP BY key HAVING argMax(deleted, version) = 1 AND s != ''",
            {"g": group, "t": topic, "p": partition, "floor": floor, "keys": tuple(keys or ())},
            settings={"strings_as_bytes": True})
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
        if self.replicas is not None:
            self.replicas.close()


def run(client: Client, query: str, params: object = None, **kwargs: object) -> list:
    """``client.execute`` with ClickHouse's failures sorted: transient ones raise Unavailable (the client
    disconnected, to reconnect on its next call), anything else propagates. Blocks."""
    try:
        return client.execute(query, params, **kwargs)
    except (ClickHouseError, OSError, EOFError) as exc:
        raise _sorted(client, exc) from None


def run_iter(client: Client, query: str, params: object = None, **kwargs: object) -> Iterator[tuple]:
    """``client.execute_iter``: the rows of a SELECT as the server sends them, block by block, failures sorted
    as ``run`` sorts them (also those met while reading). Blocks."""
    try:
        yield from client.execute_iter(query, params, **kwargs)
    except (ClickHouseError, OSError, EOFError) as exc:
        raise _sorted(client, exc) from None


def _sorted(client: Client, exc: Exception) -> Unavailable:
    """The Unavailable to raise for a transient failure (the client disconnected); re-raises anything else."""
    transient = (isinstance(exc, TRANSPORT_ERRORS)
                 or isinstance(exc, ServerException) and exc.code in TRANSIENT_CODES)
    if not transient:
        raise exc  # bug: a query or row ClickHouse rejects for good
    client.disconnect()  # transient: the next call reconnects
    detail = " ".join(str(exc).split("Stack trace")[0].split())[:300]
    return Unavailable(f"{type(exc).__name__}: {detail}", getattr(exc, "code", None))


class ShardReplicas:
    """Reads of ``consumer_state`` on a cluster from a replica that has caught up (see SYNC_TIMEOUT_S above).

    The shard that holds a partition's rows is the one the Distributed table sends them to:
    ``cityHash64(consumer_group, topic, partition)`` (the DDL's sharding key, computed by the server) modulo the
    sum of the shards' weights, slots given to the shards in order, as many as each one's weight. The cluster's
    layout is read once from ``system.clusters``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots: list[list[tuple[str, int]]] = []  # per weight slot: that shard's replicas (host, port)
        self.clients: dict[tuple[tuple[str, int], bool], Client] = {}  # (address, for syncing) -> client

    def read(self, via: Client, group: str, topic: str, partition: int, query: str, params: dict,
             **kwargs: object) -> tuple[list, int]:
        """Rows of ``query`` (on the local table) from the first replica of the partition's shard that catches
        up, and the rows the server read. Blocks; raises Unavailable when none can."""
        return self._read_caught_up(self._shard(via, group, topic, partition), "consumer_state_local", query,
                                    params, kwargs)

    def read_every_shard(self, via: Client, table: str, query: str, params: dict) -> list:
        """Rows of ``query`` on ``table`` (a replicated local table) from a caught-up replica of every shard.
        Blocks; raises Unavailable when a shard has none that can catch up."""
        if not self.slots:
            self._layout(via)
        shards = {tuple(replicas): None for replicas in self.slots}
        return [row for replicas in shards
                for row in self._read_caught_up(list(replicas), table, query, params, {})[0]]

    def _read_caught_up(self, replicas: list[tuple[str, int]], table: str, query: str, params: dict,
                        kwargs: dict) -> tuple[list, int]:
        failures = []
        for address in replicas:
            try:
                self._sync(address, table)
                client = self._client(address)
                rows = run(client, query, params, **kwargs)
                return rows, client.last_query.progress.rows
            except Unavailable as exc:
                failures.append(f"{address[0]}:{address[1]}: {exc}")
        raise Unavailable(f"no replica of the shard could catch up to read {table}: " + "; ".join(failures))

    def stream(self, via: Client, group: str, topic: str, partition: int, query: str, params: dict,
               **kwargs: object) -> tuple[Client, Iterator[tuple]]:
        """The client of the first replica of the partition's shard that catches up, and ``query``'s rows from it
        as they come (``run_iter``: a failure while reading them raises Unavailable, and the read is retried
        whole). Blocks; raises Unavailable when no replica can catch up."""
        failures = []
        for address in self._shard(via, group, topic, partition):
            try:
                self._sync(address, "consumer_state_local")
            except Unavailable as exc:
                failures.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            client = self._client(address)
            return client, run_iter(client, query, params, **kwargs)
        raise Unavailable("no replica of the shard could catch up to read state: " + "; ".join(failures))

    def _shard(self, via: Client, group: str, topic: str, partition: int) -> list[tuple[str, int]]:
        """The replicas of the shard that holds the partition's rows. Blocks; raises Unavailable."""
        if not self.slots:
            self._layout(via)
        ((h,),) = run(via, "SELECT cityHash64(toString(%(g)s), toString(%(t)s), toUInt32(%(p)s))",
                      {"g": group, "t": topic, "p": partition})
        return self.slots[h % len(self.slots)]

    def _sync(self, address: tuple[str, int], table: str) -> None:
        # 18.16 waits for the sync with no limit of its own: the sync client's socket timeout is the limit
        run(self._client(address, sync=True), f"SYSTEM SYNC REPLICA `{self.settings.clickhouse_database}`.{table}")

    def _layout(self, via: Client) -> None:
        rows = run(via, "SELECT shard_num, shard_weight, host_name, port FROM system.clusters "
                        "WHERE cluster = %(c)s ORDER BY shard_num, replica_num", {"c": self.settings.clickhouse_cluster})
        shards: dict[int, tuple[int, list[tuple[str, int]]]] = {}
        for shard, weight, host, port in rows:
            shards.setdefault(shard, (weight, []))[1].append((host, port))
        self.slots = [replicas for _, (weight, replicas) in sorted(shards.items()) for _ in range(weight)]
        if not self.slots:
            raise Unavailable(f"cluster {self.settings.clickhouse_cluster!r} is not in system.clusters")

    def _client(self, address: tuple[str, int], sync: bool = False) -> Client:
        if (address, sync) not in self.clients:
            self.clients[address, sync] = client_for(self.settings, address, SYNC_TIMEOUT_S if sync else 60)
        return self.clients[address, sync]

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
