"""consumer_state on a cluster: a worker restored through any node reads what the previous owner wrote.

The hazard is shown first: replication is asynchronous, so with one replica lagging (its fetches stopped) a
write succeeds on the other and a plain read of the lagging one returns the older state. The store's state reads
go to a replica of the owning shard only once ``SYSTEM SYNC REPLICA`` has made it fetch every part it knows of:
the lagging replica cannot catch up, so the read goes to the other one and gets the newest state; with that one
away as well the read fails and is retried — it never returns the older state."""

from __future__ import annotations

import os
import signal
import time

import pytest

from consumers.clickhouse_io import DDL_WAIT_S, DISTRIBUTED_WRITE, ClickHouseStore
from consumers.errors import Unavailable
from consumers.processors import SessionsWorker
from consumers.sessions import state_key
from consumers.state import Checkpoint
from deploy import cluster, procs
from deploy.migrate import client
from eventpipe.settings import Settings

from .conftest import node_settings

GROUP, TOPIC, PARTITION = "g.sessions", "t.events", 4


def write(store: ClickHouseStore, state: bytes, version: int) -> None:
    store.write_state(GROUP, TOPIC, [(PARTITION, "k", state, False, version)],
                      {PARTITION: Checkpoint(0, version + 1).encode()}, {PARTITION: version + 1})


def plain_read(settings: Settings, node: cluster.Node) -> list[bytes]:
    """What a replica's local table holds for the key, newest first, with no catching up."""
    return [r[0] for r in client(node_settings(settings, node), settings.clickhouse_database).execute(
        "SELECT state FROM consumer_state_local WHERE key = 'k' ORDER BY version DESC",
        settings={"strings_as_bytes": True})]


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.3)


def test_a_state_read_never_returns_an_older_state_than_was_written(cluster_settings: Settings) -> None:
    s = cluster_settings
    store = ClickHouseStore(s)
    write(store, b"v1", 1)
    wait_until(lambda: sum(1 for n in cluster.NODES if plain_read(s, n)) == 2, 30, "v1 on both replicas")
    holders = [n for n in cluster.NODES if plain_read(s, n)]
    assert holders[0].shard == holders[1].shard, holders
    # the store finds the same shard the Distributed table chose (it computes it from the sharding key)
    assert tuple(store.load_state(GROUP, TOPIC, PARTITION)) == (b"v1",)
    # the store tries the shard's first replica first: make that one the lagging one, and write through the other
    # (a Distributed insert prefers the local replica)
    lagging, writer = holders
    writes = ClickHouseStore(node_settings(s, writer))
    lagging_client = client(node_settings(s, lagging), s.clickhouse_database)
    lagging_client.execute("SYSTEM STOP FETCHES consumer_state_local")
    writer_svc = cluster.node_service(Settings.from_env(), writer)
    try:
        write(writes, b"v2", 2)  # one replica is enough for a write (EVENTPIPE_CLICKHOUSE_STATE_QUORUM=1)
        assert plain_read(s, lagging) == [b"v1"] and plain_read(s, writer)[0] == b"v2"  # the hazard
        # the store's read: the lagging replica cannot catch up in time, the other one can — the newest state
        assert tuple(store.load_state(GROUP, TOPIC, PARTITION)) == (b"v2",)
        assert plain_read(s, lagging) == [b"v1"]  # it was not read from the lagging one
        # the replica with the only copy of v2 away as well: the read fails (retried) — never v1
        writes.close()
        pid = procs.running_pid(writer_svc)
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: procs.running_pid(writer_svc) is None, 30, "the writer replica gone")
        with pytest.raises(Unavailable):
            store.load_state(GROUP, TOPIC, PARTITION)
    finally:
        lagging_client.execute("SYSTEM START FETCHES consumer_state_local")
        if procs.running_pid(writer_svc) is None:
            procs.start(writer_svc)
    wait_until(lambda: plain_read(s, lagging)[:1] == [b"v2"], 60, "the lagging replica fetched v2")
    assert tuple(store.load_state(GROUP, TOPIC, PARTITION)) == (b"v2",)
    store.close()


def test_a_state_write_needs_one_replica_and_the_store_can_ask_for_two(cluster_settings: Settings) -> None:
    """EVENTPIPE_CLICKHOUSE_STATE_QUORUM=2 makes a write wait for both replicas of its shard (insert_quorum)."""
    s = cluster_settings
    store = ClickHouseStore(s)
    write(store, b"w1", 10)
    wait_until(lambda: sum(1 for n in cluster.NODES if plain_read(s, n)[:1] == [b"w1"]) == 2, 30, "w1 on both")
    holders = [n for n in cluster.NODES if plain_read(s, n)]
    lagging_client = client(node_settings(s, holders[0]), s.clickhouse_database)
    quorum = ClickHouseStore(node_settings(s, holders[1]))
    quorum.state_write_settings = {**DISTRIBUTED_WRITE, "insert_quorum": 2, "insert_quorum_timeout": 3000}
    lagging_client.execute("SYSTEM STOP FETCHES consumer_state_local")
    try:
        with pytest.raises(Unavailable):
            write(quorum, b"w2", 11)
        write(ClickHouseStore(node_settings(s, holders[1])), b"w3", 12)  # the default: one replica is enough
    finally:
        lagging_client.execute("SYSTEM START FETCHES consumer_state_local")
    assert tuple(store.load_state(GROUP, TOPIC, PARTITION)) == (b"w3",)


def test_compaction_deletes_below_the_floor_on_both_replicas_while_a_node_elsewhere_is_away(
        fresh_cluster_settings: Settings) -> None:
    """Compaction on a cluster (issue 10 §2): the delete goes ON CLUSTER to the replicated local tables, both
    replicas of the partition's shard lose the rows below the floor, restore through any node is exact — and a
    node of the other shard that does not answer (SIGSTOP) does not hold the worker up: its part stays queued."""
    s, p = fresh_cluster_settings, 2
    store = ClickHouseStore(s)
    born = [(p, f"k{i:05d}", b"x", False, i) for i in range(1000)]
    gone = [(p, key, b"", True, 1000 + i) for i, (_, key, *_) in enumerate(born)]
    live = [(f"live{i}", b"s%d" % i) for i in range(10)]
    store.write_state(GROUP, TOPIC, born + gone + [(p, key, state, False, 2000) for key, state in live],
                      {p: Checkpoint(7, 2001).encode()}, {p: 2001})
    clients = {n: client(node_settings(s, n), s.clickhouse_database) for n in cluster.NODES}
    below = "SELECT count() FROM consumer_state_local WHERE `partition` = %(p)s AND version < 2000"
    wait_until(lambda: sum(1 for c in clients.values() if c.execute(below, {"p": p})[0][0] == 2000) == 2, 30,
               "the rows on both replicas of their shard")  # replication is asynchronous (quorum 1)
    holders = [n for n, c in clients.items() if c.execute(below, {"p": p})[0][0] > 0]
    assert len(holders) == 2 and holders[0].shard == holders[1].shard, holders
    away = next(n for n in cluster.NODES if n.shard != holders[0].shard and n.replica == 2)  # not the store's host
    pid = procs.running_pid(cluster.node_service(Settings.from_env(), away))  # the run's servers, not this test's
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert store.compact(GROUP, TOPIC, p, live, [], Checkpoint(7, 2001, 2000)) == len(live)
        waited = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert waited < DDL_WAIT_S + 30, waited  # not the 180 s ClickHouse waits for an ON CLUSTER query by default
    deadline = time.monotonic() + 120
    while any(clients[n].execute(below, {"p": p})[0][0] for n in holders):
        assert time.monotonic() < deadline, "the rows below the floor are still there on a replica after 120 s"
        time.sleep(0.5)
    for node in cluster.NODES:
        through = ClickHouseStore(node_settings(s, node))
        restored = through.load_state(GROUP, TOPIC, p)
        through.close()
        assert sorted(restored) == sorted(state for _, state in live), node
        assert restored.checkpoint == Checkpoint(7, 2001, 2000), node


def test_keys_seen_below_the_floor_are_found_through_any_node(cluster_settings: Settings) -> None:
    """The look-up compaction falls back on (state.py, Forgotten tombstones) reads ``sessions_local`` on a
    caught-up replica of every shard: rows just written through the Distributed table, on both shards, are all
    found through any node (a plain Distributed read found 1 and 14 of the 20 in two tries)."""
    s = cluster_settings
    rows = [("acc", "APPSTART", f"sess{i:03d}", "timed_out", None, None, None, 0, i) for i in range(40)]
    ClickHouseStore(s).insert("sessions", SessionsWorker.columns, rows)
    keys = [state_key("acc", f"sess{i:03d}", "APPSTART") for i in range(40)]
    shards = {n.shard for n in cluster.NODES
              if client(node_settings(s, n), s.clickhouse_database).execute("SELECT count() FROM sessions_local")[0][0]}
    assert len(shards) == 2, "the rows did not spread over both shards"
    for node in cluster.NODES:
        store = ClickHouseStore(node_settings(s, node))
        assert sorted(store.seen_at_or_below(SessionsWorker.history, {0: keys}, {0: 19})[0]) == sorted(keys[:20])
