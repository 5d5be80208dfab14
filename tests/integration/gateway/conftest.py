"""Integration fixtures of the gateway: fresh topics, and the app over the real Kafka publisher of each client."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from eventpipe.settings import KAFKA_CLIENTS, Settings

from .helpers import Gateway, make_gateway


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> str:
    """Every gateway contract test runs with each Kafka client (SPEC §2): the suite is the boundary's definition."""
    return request.param


@pytest.fixture
def topics_settings(infra: Settings, kafka_client: str) -> Iterator[Settings]:
    """Settings with fresh topics of their own (the gateway needs no ClickHouse database, so none is made)."""
    from deploy.topics import delete_topics, ensure_topics

    settings = dataclasses.replace(infra, topic_prefix="eptest_gw_" + uuid.uuid4().hex[:10],
                                   kafka_client=kafka_client)
    ensure_topics(settings)
    yield settings
    delete_topics(settings, list(settings.topics))


@pytest.fixture
def gateway(topics_settings: Settings, tmp_path: Path) -> Iterator[Gateway]:
    """The app with the real Kafka publisher on fresh topics."""
    gw = make_gateway(topics_settings, tmp_path)
    yield gw
    gw.publisher.close()
