"""The ClickHouse users run today (docker-compose.yml ships a current image) next to the 18.16 of these machines.

Current ClickHouse runs in-process (PyPI ``chdb-core``, ClickHouse 26.x): every migration is applied statement by
statement as ``deploy/migrate.py`` applies it, then every ClickHouse call the workers make for real traffic
(``workload.py``: real gateway → real Avro records → real processors → the real ``ClickHouseStore``) is replayed
on it and, through clickhouse-driver like the workers, on the shared 18.16 server in a database of its own.
Both must then give the same ``*_final`` rows, the same state restore and the same answers to every query of
``docs/queries.sql``. Known differences (FIELD_NOTES.md: DateTimes past 2106-02-07, raw-table row counts under
``optimize_on_insert``) are outside what this data and these queries touch.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from chdb.session import Session

from consumers.clickhouse_io import ClickHouseStore
from deploy.migrate import SQL_DIR, statements
from eventpipe.settings import REPO_ROOT, Settings
from tests.conftest import _isolated

from .workload import Call, http_traffic, sql_text, worker_calls

QUERIES = statements((REPO_ROOT / "docs" / "queries.sql").read_text(), "unused")
FINAL_VIEWS = ("events_final", "sessions_final", "joined_events_final", "dead_letters_final", "components_final")


@pytest.fixture(scope="module")
def old(infra: Settings) -> Iterator[Settings]:
    """A migrated database of its own on the 18.16 server (the run's shared one must stay empty)."""
    yield from _isolated(infra)


@pytest.fixture(scope="module")
def calls(old: Settings) -> list[Call]:
    return worker_calls(old, http_traffic(old, int(time.time())))


def query_old(settings: Settings, sql: str) -> bytes:
    """``sql``'s rows as TabSeparated text from the 18.16 server (its HTTP interface). Blocks."""
    url = (f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/?"
           + urllib.parse.urlencode({"database": settings.clickhouse_database, "user": settings.clickhouse_user,
                                     "password": settings.clickhouse_password}))
    with urllib.request.urlopen(url, data=(sql + "\nFORMAT TabSeparated").encode(), timeout=60) as answer:
        return answer.read()


@pytest.fixture(scope="module")
def written_old(old: Settings, calls: list[Call]) -> Settings:
    """The calls replayed on 18.16 exactly as the workers send them (clickhouse-driver, native protocol)."""
    store = ClickHouseStore(old)
    try:
        for call in calls:
            store._execute(call.query, call.params, **call.kwargs)
    finally:
        store.close()
    return old


@pytest.fixture(scope="module")
def new(old: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """An in-process current ClickHouse with the migrations applied, in the old server's time zone."""
    session = Session(str(tmp_path_factory.mktemp("chdb")))
    db = old.clickhouse_database
    session.query(f"SET session_timezone = '{query_old(old, 'SELECT timezone()').decode().strip()}'")
    session.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    session.query(f"USE `{db}`")
    session.query("CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime DEFAULT now()) "
                  "ENGINE = MergeTree() ORDER BY name")  # as migrate() records what it applied
    for path in sorted(SQL_DIR.glob("*.sql")):
        for statement in statements(path.read_text(), db):
            session.query(statement)
        session.query(f"INSERT INTO schema_migrations (name) VALUES ('{path.name}')")
    yield session
    session.close()


@pytest.fixture(scope="module")
def written_new(new: Session, calls: list[Call]) -> Session:
    for call in calls:
        if call.query.startswith("INSERT"):
            new.query(sql_text(call))
    return new


def query_new(session: Session, sql: str) -> bytes:
    return session.query(sql, "TabSeparated").bytes()


def lines(text: bytes) -> list[bytes]:
    """Rows of TabSeparated text in a stable order (ties of an ORDER BY may come out either way). Bytes: the
    state column holds binary."""
    return sorted(text.splitlines())


def test_every_migration_gives_the_same_tables_views_and_columns(old: Settings, new: Session) -> None:
    schema = ("SELECT table, name, type, default_kind, default_expression FROM system.columns "
              f"WHERE database = '{old.clickhouse_database}' ORDER BY table, name")
    assert lines(query_new(new, schema)) == lines(query_old(old, schema))
    migrations = sorted(p.name for p in Path(SQL_DIR).glob("*.sql"))
    assert len(migrations) >= 6 and migrations[0].startswith("001")


def test_the_workload_covers_every_table_the_workers_write(calls: list[Call]) -> None:
    tables = {c.query.split()[2] for c in calls if c.query.startswith("INSERT")}
    assert tables == {"events", "sessions", "joined_events", "dead_letters", "components", "consumer_state"}
    # per stateful worker: restore (checkpoint + states), tombstones to keep, compaction, restore above its floor;
    # the sessions worker looks tombstones up before and after, and asks `sessions` for two partitions after
    assert sum(1 for c in calls if c.query.startswith("SELECT")) == 2 * (2 + 1 + 2) + 2 + 2
    assert sum(1 for c in calls if c.query.startswith("SELECT DISTINCT account_id, type, session FROM sessions")) == 2
    assert sum(1 for c in calls if c.query.startswith("ALTER TABLE consumer_state DELETE")) == 2


@pytest.mark.parametrize("view", FINAL_VIEWS)
def test_final_views_agree(written_old: Settings, written_new: Session, view: str) -> None:
    old_rows, new_rows = query_old(written_old, f"SELECT * FROM {view}"), query_new(written_new, f"SELECT * FROM {view}")
    assert old_rows.strip(), f"{view} is empty on 18.16: the workload wrote nothing to it"
    assert lines(new_rows) == lines(old_rows)


def test_final_views_hold_one_row_per_key(written_new: Session) -> None:
    """The workload rewrote rows across batches and delivered an event twice: FINAL must fold them on 26.x."""
    counts = {"events": "account_id, event_id", "sessions": "account_id, type, session",
              "joined_events": "account_id, component_id, type_id, event_id", "components": "account_id, component_id"}
    for table, key in counts.items():
        raw, distinct = query_new(written_new, f"SELECT count(), uniqExact({key}) FROM {table} FINAL").split()
        assert raw == distinct, table
        assert int(query_new(written_new, f"SELECT count() FROM {table}")) >= int(distinct), table


def test_state_restore_and_tombstone_lookups_agree(written_old: Settings, written_new: Session,
                                                   calls: list[Call]) -> None:
    # Both servers merged as far as they go: the compaction wrote its checkpoint at the version of the flush's, so
    # an unmerged table answers count() and that tie as its parts happen to lie (the floor is read apart: max).
    query_old(written_old, "OPTIMIZE TABLE consumer_state FINAL")
    query_new(written_new, "OPTIMIZE TABLE consumer_state FINAL")
    selects = [sql_text(c) for c in calls if c.query.startswith("SELECT")]
    for sql in selects:
        old_rows = query_old(written_old, sql)
        joins_tombstones = ".joins'" in sql and "argMax(deleted, version) = 1" in sql  # joins keep none
        assert old_rows.strip() or joins_tombstones, f"nothing restored on 18.16 by:\n{sql}"
        assert lines(query_new(written_new, sql)) == lines(old_rows), sql


@pytest.mark.parametrize("query", QUERIES, ids=[q.splitlines()[0][:60] for q in QUERIES])
def test_docs_query_gives_the_same_answer(written_old: Settings, written_new: Session, query: str) -> None:
    old_rows = query_old(written_old, query)
    assert old_rows.strip(), "the workload gives this query nothing to find on 18.16"
    assert lines(query_new(written_new, query)) == lines(old_rows)
