"""The cluster DDL: every table on every node, dedup-safe sharding, *_final right across shards, re-runnable
migrations, and one clear message (nothing created) for each kind of misconfiguration."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from clickhouse_driver import Client

from deploy import cluster
from deploy.migrate import client, migrate
from deploy.procs import DeployError
from deploy.topics import ensure_topics
from eventpipe.settings import Settings, SettingsError

from .conftest import node_settings

TABLES = ("events", "sessions", "joined_events", "dead_letters", "consumer_state", "components")
VIEWS = ("events_final", "sessions_final", "joined_events_final", "dead_letters_final", "components_final")


def node_client(settings: Settings, node: cluster.Node) -> Client:
    return client(node_settings(settings, node), settings.clickhouse_database)


def test_every_node_has_every_table(cluster_settings: Settings) -> None:
    for node in cluster.NODES:
        rows = node_client(cluster_settings, node).execute(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase()")
        engines = dict(rows)
        for table in TABLES:
            assert engines[f"{table}_local"] == "ReplicatedReplacingMergeTree", (node, table)
            assert engines[table] == "Distributed", (node, table)
        for view in VIEWS:
            assert engines[view] == "View", (node, view)
        assert engines["schema_migrations"] == "ReplicatedMergeTree"
        # the macros put the two replicas of a shard on one ZooKeeper path
        replicas = node_client(cluster_settings, node).execute(
            "SELECT zookeeper_path, replica_name, total_replicas FROM system.replicas "
            "WHERE database = currentDatabase() AND table = 'events_local'")
        assert replicas == [(f"/clickhouse/tables/{cluster_settings.clickhouse_database}/{node.shard:02d}/events",
                             f"r{node.replica}", 2)]


def test_migrate_again_applies_nothing(cluster_settings: Settings) -> None:
    assert migrate(cluster_settings) == []


def test_copies_of_one_event_meet_on_one_shard_and_final_keeps_one(cluster_settings: Settings) -> None:
    """Each event written twice (different row_version, as a Kafka replay does) through two different nodes:
    events_final has each once, with the newer version, and the events spread over both shards."""
    columns = "account_id, event_id, action, type, event_time, session, received_at, received_at_ms, source, " \
              "kafka_partition, kafka_offset, row_version"
    ids = [uuid.uuid4().hex for _ in range(200)]
    for version, node in ((1, cluster.NODES[0]), (2, cluster.NODES[3])):
        rows = [("acc", i, "START", "APPSTART", 1365772427, "s", 1365772427, 0, "http", 0, version, version)
                for i in ids]
        node_client(cluster_settings, node).execute(f"INSERT INTO events ({columns}) VALUES", rows,
                                                    settings={"insert_distributed_sync": 1})
    for node in cluster.NODES:  # replication is asynchronous: let every replica fetch before reading any
        node_client(cluster_settings, node).execute("SYSTEM SYNC REPLICA events_local")
    c = node_client(cluster_settings, cluster.NODES[1])
    assert c.execute("SELECT count(), uniqExact(event_id), min(row_version) FROM events_final") == [(200, 200, 2)]
    assert c.execute("SELECT count() FROM events") == [(400,)]
    per_shard = [node_client(cluster_settings, n).execute("SELECT count() FROM events_local")[0][0]
                 for n in cluster.NODES if n.replica == 1]
    assert sum(per_shard) == 400 and min(per_shard) > 0, per_shard


def test_unknown_cluster_name_stops_before_any_table(cluster_base: Settings) -> None:
    settings = dataclasses.replace(cluster_base, clickhouse_cluster="nosuchcluster",
                                   clickhouse_database="epcl_" + uuid.uuid4().hex[:10])
    with pytest.raises(DeployError) as caught:
        migrate(settings)
    message = str(caught.value)
    assert "'nosuchcluster'" in message and "remote_servers" in message and "EVENTPIPE_CLICKHOUSE_CLUSTER" in message
    assert "eventpipe" in message  # names the clusters that are there
    for node in cluster.NODES:
        assert client(node_settings(settings, node)).execute(
            "SELECT count() FROM system.databases WHERE name = %(d)s", {"d": settings.clickhouse_database}) == [(0,)]


def test_replication_factor_above_broker_count_stops_before_any_topic(cluster_base: Settings) -> None:
    settings = dataclasses.replace(cluster_base, topic_prefix="epcl_" + uuid.uuid4().hex[:10],
                                   topic_replication_factor=4)
    with pytest.raises(DeployError) as caught:
        ensure_topics(settings)
    assert "EVENTPIPE_TOPIC_REPLICATION_FACTOR=4" in str(caught.value) and "3 broker(s)" in str(caught.value)
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        assert not [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
    finally:
        admin.close()


def test_min_insync_above_replication_factor_is_refused() -> None:
    with pytest.raises(SettingsError, match="EVENTPIPE_TOPIC_MIN_INSYNC_REPLICAS=3"):
        Settings(topic_replication_factor=2, topic_min_insync_replicas=3)


def test_cluster_tables_and_views_have_the_single_node_columns(cluster_settings: Settings) -> None:
    """The cluster DDL restates the single-node tables (with 006's columns folded in): the single-node migrations,
    applied to a scratch database on one node, must give the same columns, in the same order, as the cluster's."""
    node = node_settings(cluster_settings, cluster.NODES[0])
    scratch = dataclasses.replace(node, clickhouse_cluster="", clickhouse_database="epcl_" + uuid.uuid4().hex[:10])
    migrate(scratch)
    try:
        c = client(node)

        def columns(database: str, table: str) -> list[tuple[str, str]]:
            return [(row[0], row[1]) for row in c.execute(f"DESCRIBE TABLE `{database}`.`{table}`")]

        for table in TABLES:
            single = columns(scratch.clickhouse_database, table)
            assert single, table
            assert columns(cluster_settings.clickhouse_database, f"{table}_local") == single, table
            assert columns(cluster_settings.clickhouse_database, table) == single, table
        for view in VIEWS:
            assert columns(cluster_settings.clickhouse_database, view) == columns(scratch.clickhouse_database, view)
    finally:
        client(node).execute(f"DROP DATABASE IF EXISTS `{scratch.clickhouse_database}`")
