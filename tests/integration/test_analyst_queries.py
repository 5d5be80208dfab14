"""Every example query in docs/queries.sql runs on the real ClickHouse against the migrated schema."""

from __future__ import annotations

import pytest

from deploy.migrate import client, statements
from eventpipe.settings import REPO_ROOT, Settings

QUERIES = statements((REPO_ROOT / "docs" / "queries.sql").read_text(), "unused")


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[0][:60] for q in QUERIES])
def test_example_query_runs(settings: Settings, query: str) -> None:
    client(settings, settings.clickhouse_database).execute(query)
