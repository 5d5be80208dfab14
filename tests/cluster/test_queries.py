"""Every example query in docs/queries.sql runs on the cluster's schema too (the Distributed tables and views
carry the single-node names)."""

from __future__ import annotations

import pytest

from deploy.migrate import client
from eventpipe.settings import Settings
from tests.integration.test_analyst_queries import QUERIES


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[0][:60] for q in QUERIES])
def test_example_query_runs_on_the_cluster(cluster_settings: Settings, query: str) -> None:
    client(cluster_settings, cluster_settings.clickhouse_database).execute(query)
