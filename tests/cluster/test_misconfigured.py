"""A node without the {shard}/{replica} macros, or one that cannot reach ZooKeeper: migration stops with one
message naming what is wrong and what to set, before creating anything. Each case runs its own short-lived
ClickHouse server (ports 19106/19116/19126) whose only cluster is itself."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from deploy import clickhouse, cluster, procs
from deploy.migrate import client, migrate
from deploy.procs import DeployError
from eventpipe.settings import Settings

TCP, HTTP, INTERSERVER = 19106, 19116, 19126
DEAD_ZOOKEEPER_PORT = 12189  # nothing listens there


def server(tmp_path: Path, macros: str, zookeeper_port: int) -> procs.Service:
    extra = f"""    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{INTERSERVER}</interserver_http_port>
    <remote_servers><lonely><shard><replica><host>127.0.0.1</host><port>{TCP}</port></replica></shard></lonely></remote_servers>
    <zookeeper><node><host>127.0.0.1</host><port>{zookeeper_port}</port></node><session_timeout_ms>3000</session_timeout_ms></zookeeper>
    {macros}
"""
    config = clickhouse.write_config(tmp_path, TCP, HTTP, extra, who="tests/cluster/test_misconfigured.py")
    return procs.Service(name="clickhouse-misconfigured", argv=[clickhouse.server_binary(), f"--config-file={config}"],
                         run_dir=tmp_path, log_file=tmp_path / "log" / "stdout.log", marker=str(config),
                         ready=lambda: cluster.http_answers(HTTP), ports=(TCP, HTTP, INTERSERVER), cwd=tmp_path)


@pytest.mark.parametrize("macros, zookeeper_port, expected", [
    ("<macros><shard>01</shard></macros>", cluster.ZOOKEEPER_PORT, ["no {replica} macro", "<macros>"]),
    ("", cluster.ZOOKEEPER_PORT, ["no {shard} and no {replica} macro"]),
    ("<macros><shard>01</shard><replica>r1</replica></macros>", DEAD_ZOOKEEPER_PORT,
     ["cannot reach ZooKeeper", "<zookeeper>"]),
])
def test_migration_stops_before_any_table(cluster_base: Settings, tmp_path: Path, macros: str, zookeeper_port: int,
                                          expected: list[str]) -> None:
    svc = server(tmp_path, macros, zookeeper_port)
    procs.start(svc)
    try:
        settings = dataclasses.replace(cluster_base, clickhouse_host="127.0.0.1", clickhouse_port=TCP,
                                       clickhouse_alt_hosts="", clickhouse_cluster="lonely",
                                       clickhouse_database="epcl_" + uuid.uuid4().hex[:10])
        with pytest.raises(DeployError) as caught:
            migrate(settings)
        message = str(caught.value)
        assert f"node 127.0.0.1:{TCP} of cluster 'lonely'" in message
        for part in expected:
            assert part in message, message
        assert client(settings).execute("SELECT count() FROM system.databases WHERE name = %(d)s",
                                        {"d": settings.clickhouse_database}) == [(0,)]
    finally:
        procs.stop(svc)
