"""consumer_state on a cluster: a worker restored through any node reads what the previous owner wrote.

18.16 offers quorum inserts (``insert_quorum``) and sequentially consistent reads (``select_sequential_
consistency``). The hazard is shown first: with replication alone (fetches of one replica stopped, as when it lags)
a write succeeds on one replica and a restore through the other returns the older state. The store's quorum
write does not succeed in that situation — so no Kafka commit follows it — and once the replica fetches again the
retried write goes through and a restore through that replica reads it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from consumers.clickhouse_io import DDL_WAIT_S, DISTRIBUTED_WRITE, ClickHouseStore
from consumers.errors import Unavailable
from consumers.state import Checkpoint
from deploy import cluster, procs
from deploy.migrate import client
from eventpipe.settings import Settings

from .conftest import node_settings

GROUP, TOPIC, PARTITION = "g.sessions", "t.events", 4


def write(store: ClickHouseStore, state: bytes, version: int) -> None:
    store.write_state(GROUP, TOPIC, [(PARTITION, "k", state, False, version)],
                      {PARTITION: Checkpoint(0, version + 1).encode()}, {PARTITION: version + 1})


def restored_through(settings: Settings, node: cluster.Node, consistent: bool = True) -> tuple[bytes, ...]:
    store = ClickHouseStore(node_settings(settings, node))
    if not consistent:
        store.state_read_settings = {}
    try:
        return store.load_state(GROUP, TOPIC, PARTITION).states
    finally:
        store.close()


def test_a_state_write_counts_only_once_both_replicas_of_its_shard_hold_it(cluster_settings: Settings) -> None:
    s = cluster_settings
    store = ClickHouseStore(s)
    write(store, b"v1", 1)
    holders = [n for n in cluster.NODES
               if client(node_settings(s, n), s.clickhouse_database).execute(
                   "SELECT count() FROM consumer_state_local")[0][0] > 0]
    assert len(holders) == 2 and holders[0].shard == holders[1].shard, holders  # quorum: both replicas, one shard
    # the writes below go through the other replica of the shard (a Distributed insert prefers the local replica):
    # a write landing on the lagging replica itself would be fetched by the healthy one, and both would hold it
    writer, lagging = holders
    store.close()
    store = ClickHouseStore(node_settings(s, writer))
    store.state_write_settings = {**store.state_write_settings, "insert_quorum_timeout": 3000}  # fail fast here
    lagging_client = client(node_settings(s, lagging), s.clickhouse_database)
    lagging_client.execute("SYSTEM STOP FETCHES consumer_state_local")
    try:
        # the hazard: replication alone — the write succeeds, a restore through the lagging replica is stale
        plain = ClickHouseStore(node_settings(s, writer))
        plain.state_write_settings = dict(DISTRIBUTED_WRITE)
        write(plain, b"v2", 2)
        assert restored_through(s, lagging, consistent=False) == (b"v1",)
        # the store's quorum write is not reported done while a replica of the shard lacks it
        with pytest.raises(Unavailable):
            write(store, b"v3", 3)
    finally:
        lagging_client.execute("SYSTEM START FETCHES consumer_state_local")
    deadline = time.monotonic() + 60
    while True:  # the worker's retry loop: the same rows again until the write counts
        try:
            write(store, b"v3", 3)
            break
        except Unavailable:
            assert time.monotonic() < deadline, "the quorum write never went through after fetches resumed"
            time.sleep(0.5)
    for node in holders:
        assert restored_through(s, node) == (b"v3",), node
    assert restored_through(s, cluster.NODES[0] if writer.shard != 1 else cluster.NODES[3]) == (b"v3",)  # other shard's node


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
        assert sorted(restored.states) == sorted(state for _, state in live), node
        assert restored.checkpoint == Checkpoint(7, 2001, 2000), node
