"""The pure parts of running on a cluster: settings, the cluster DDL's substitution, the local cluster's layout."""

from __future__ import annotations

import pytest

from deploy import cluster
from deploy.migrate import CLUSTER_SQL_DIR, SQL_DIR, statements
from eventpipe.settings import Settings, SettingsError


def test_no_cluster_setting_means_the_single_node_product() -> None:
    s = Settings.from_env({})
    assert not s.clustered and s.local_clickhouse
    assert (s.topic_replication_factor, s.topic_min_insync_replicas, s.clickhouse_alt_hosts) == (1, 1, "")


def test_a_cluster_is_never_started_as_the_single_node_clickhouse() -> None:
    assert not Settings.from_env({"EVENTPIPE_CLICKHOUSE_CLUSTER": "c"}).local_clickhouse


@pytest.mark.parametrize("env, message", [
    ({"EVENTPIPE_TOPIC_MIN_INSYNC_REPLICAS": "2"}, "EVENTPIPE_TOPIC_MIN_INSYNC_REPLICAS=2"),
    ({"EVENTPIPE_TOPIC_REPLICATION_FACTOR": "3", "EVENTPIPE_TOPIC_MIN_INSYNC_REPLICAS": "0"}, "between 1 and"),
    ({"EVENTPIPE_CLICKHOUSE_ALT_HOSTS": "a:1,b"}, "'b' is not host:port"),
])
def test_inconsistent_cluster_settings_are_refused(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_cluster_statements_name_the_cluster_and_the_bare_database_and_keep_the_macros() -> None:
    sql = (CLUSTER_SQL_DIR / "001_events.sql").read_text()
    out = statements(sql, "db1", "c1")
    assert len(out) == 3
    assert out[0].startswith("CREATE TABLE IF NOT EXISTS `db1`.events_local ON CLUSTER 'c1'")
    assert "'/clickhouse/tables/db1/{shard}/events', '{replica}', row_version" in out[0]
    assert "Distributed('c1', 'db1', 'events_local', cityHash64(account_id, event_id))" in out[1]
    assert "FROM `db1`.events FINAL" in out[2]


def test_single_node_statements_are_untouched_by_the_cluster_placeholders() -> None:
    sql = (SQL_DIR / "001_events.sql").read_text()
    assert statements(sql, "db1") == statements(sql, "db1", "")
    assert not any("ON CLUSTER" in s or "Replicated" in s for s in statements(sql, "db1"))


def test_every_single_node_table_has_a_cluster_form_sharded_by_its_dedup_key() -> None:
    """The sharding key of each Distributed table hashes a prefix of its local table's ORDER BY (the dedup key),
    so the copies of one row always meet on one shard."""
    import re

    text = "\n".join(p.read_text() for p in sorted(CLUSTER_SQL_DIR.glob("*.sql")))
    order_by = dict(re.findall(r"EXISTS \{database\}\.(\w+)_local ON CLUSTER .*?ORDER BY \(([^)]*)\);", text, re.S))
    sharding = dict(re.findall(r"'(\w+)_local',\s*cityHash64\(([^)]*)\)\);", text))
    single = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", "\n".join(p.read_text() for p in SQL_DIR.glob("*.sql"))))
    assert set(order_by) == set(sharding) == single
    for table, key in sharding.items():
        order = [c.strip() for c in order_by[table].split(",")]
        assert [c.strip() for c in key.split(",")] == order[:len(key.split(","))], table


def test_the_local_cluster_is_two_shards_of_two_replicas_on_ports_of_its_own() -> None:
    xml = cluster.remote_servers_xml()
    assert xml.count("<shard>") == 2 and xml.count("<replica>") == 4
    assert xml.count("<internal_replication>true</internal_replication>") == 2
    ports = [p for n in cluster.NODES for p in (n.tcp_port, n.http_port, n.interserver_port)]
    ports += [cluster.broker_port(b) for b in cluster.BROKER_IDS] + [cluster.controller_port(b) for b in cluster.BROKER_IDS]
    ports += [cluster.GATEWAY_PORT, cluster.PROMETHEUS_PORT, *range(cluster.METRICS_PORT, cluster.METRICS_PORT + 5)]
    assert len(set(ports)) == len(ports) and all(19000 <= p <= 19999 for p in ports)
    s = cluster.cluster_settings(Settings.from_env({}))
    assert s.clustered and s.topic_replication_factor == 3 and s.topic_min_insync_replicas == 2
    assert s.kafka_bootstrap.count(",") == 2 and s.clickhouse_alt_hosts.count(",") == 2
    assert cluster.cluster_settings(s) is s
