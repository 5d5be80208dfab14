"""Fixtures shared by every test tier.

Integration fixtures bring Kafka and ClickHouse up through the same ``deploy/`` code as ``make run`` (a no-op
when ``make test`` already did), and give each run — or each test, with ``isolated_settings`` — its own
topics and its own database, removed afterwards.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from eventpipe.settings import Settings

CLUSTER_TESTS = Path(__file__).resolve().parent / "cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cluster", action="store_true",
                     help="also run tests/cluster against the local cluster (make test-cluster passes it)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/cluster needs the local cluster's servers, which `make test` does not start: only with --cluster."""
    if collection_path == CLUSTER_TESTS and not config.getoption("--cluster"):
        return True
    return None


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def infra(base_settings: Settings) -> Iterator[Settings]:
    """Kafka and ClickHouse answering; started here (and stopped at the end) only if they were not running."""
    from deploy import clickhouse, kafka

    started = []
    if base_settings.local_kafka and kafka.start(base_settings):
        started.append(kafka)
    if base_settings.local_clickhouse and clickhouse.start(base_settings):
        started.append(clickhouse)
    yield base_settings
    for service in reversed(started):
        service.stop(base_settings)


def _isolated(base: Settings) -> Iterator[Settings]:
    from deploy.migrate import drop_database, migrate
    from deploy.topics import delete_topics, ensure_topics

    run = "eptest_" + uuid.uuid4().hex[:10]
    settings = dataclasses.replace(base, topic_prefix=run, clickhouse_database=run)
    ensure_topics(settings)
    migrate(settings)
    yield settings
    delete_topics(settings, list(settings.topics))
    drop_database(settings)


@pytest.fixture(scope="session")
def settings(infra: Settings) -> Iterator[Settings]:
    """Settings for this test run: its own topics (PREFIX.events, …) and its own migrated database."""
    yield from _isolated(infra)


@pytest.fixture
def isolated_settings(infra: Settings) -> Iterator[Settings]:
    """Like ``settings`` but fresh for one test."""
    yield from _isolated(infra)


@pytest.fixture
def clickhouse_client(settings: Settings):
    """A clickhouse-driver client on the run's database."""
    from deploy.migrate import client

    return client(settings, settings.clickhouse_database)
