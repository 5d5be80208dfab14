"""The cluster tests run against the local cluster (``make test-cluster`` starts its servers: 3 Kafka brokers,
ZooKeeper, 2 shards × 2 replicas of ClickHouse). Each run gets its own topics and its own database, created ON
CLUSTER through ``deploy/`` and dropped afterwards."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from deploy import cluster, procs
from eventpipe.settings import Settings
from tests.conftest import _isolated


def node_settings(settings: Settings, node: cluster.Node) -> Settings:
    """``settings`` talking to one node only (no failover): to read what that replica holds."""
    return dataclasses.replace(settings, clickhouse_host="127.0.0.1", clickhouse_port=node.tcp_port,
                               clickhouse_alt_hosts="")


@pytest.fixture(scope="session")
def cluster_base() -> Settings:
    """The cluster's settings; fails at once when its servers are not running (the run did not start them)."""
    base = Settings.from_env()
    down = [svc.name for svc in cluster.infra_services(base) if procs.running_pid(svc) is None]
    if down:
        pytest.fail(f"the local cluster is not running ({', '.join(down)} down): run `make test-cluster`, which "
                    "starts it, or `make cluster-up` first")
    return cluster.cluster_settings(base)


@pytest.fixture(scope="module")
def cluster_settings(cluster_base: Settings) -> Iterator[Settings]:
    """Settings for this module: its own replicated topics and its own database on every node."""
    yield from _isolated(cluster_base)


@pytest.fixture
def fresh_cluster_settings(cluster_base: Settings) -> Iterator[Settings]:
    """Like ``cluster_settings`` but for one test: tests that count what landed need tables of their own."""
    yield from _isolated(cluster_base)
