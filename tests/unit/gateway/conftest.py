"""Unit fixtures of the gateway: the app over an in-memory key store and a fake publisher (no network)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import falcon.testing
import pytest

from eventpipe.settings import Settings
from ingest_gateway.app import create_app
from ingest_gateway.keystore import KeyStore
from ingest_gateway.metrics import Metrics

from .fakes import FakePublisher
from .helpers import KEY, OTHER_KEY


@pytest.fixture
def gw_settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env({}), home=str(tmp_path), topic_prefix="t")


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def keystore() -> KeyStore:
    return KeyStore.from_keys({KEY: "acme", OTHER_KEY: "globex"})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(gw_settings: Settings, keystore: KeyStore, publisher: FakePublisher,
           metrics: Metrics) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(gw_settings, keystore, publisher, metrics))
