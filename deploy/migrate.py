"""Idempotent schema migrations: ``schemas/clickhouse/NNN_name.sql`` applied in order, each once.

Applied files are recorded in ``DATABASE.schema_migrations``. A file may hold several statements, each ending
with ``;`` at the end of a line. The literal ``{database}`` is replaced by the target database's name, so views
can name their tables fully and work from whatever database an analyst is in.
"""

from __future__ import annotations

import re
from pathlib import Path

from eventpipe.settings import REPO_ROOT, Settings

from .procs import DeployError, say

SQL_DIR = REPO_ROOT / "schemas" / "clickhouse"
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


def statements(sql: str, database: str) -> list[str]:
    """Split a migration file into statements, comments dropped and ``{database}`` substituted."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(lines).replace("{database}", f"`{database}`")
    return [s.strip() for s in _STATEMENT_END.split(text) if s.strip()]


def client(settings: Settings, database: str | None = None):
    from clickhouse_driver import Client

    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password, database=database or "default",
                  connect_timeout=5, send_receive_timeout=60)


def migrate(settings: Settings, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every migration not yet applied; returns the names applied now. Blocks; raises DeployError."""
    from clickhouse_driver.errors import Error as ClickHouseError

    db = settings.clickhouse_database
    try:
        admin = client(settings)
        admin.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        admin.execute(f"CREATE TABLE IF NOT EXISTS `{db}`.schema_migrations "
                      "(name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY name")
        done = {row[0] for row in admin.execute(f"SELECT name FROM `{db}`.schema_migrations")}
    except (ClickHouseError, OSError, EOFError) as exc:
        raise DeployError(f"migrate: cannot reach ClickHouse at {settings.clickhouse_host}:"
                          f"{settings.clickhouse_port}: {exc}") from None
    applied = []
    conn = client(settings, db)
    for path in sorted(sql_dir.glob("*.sql")):
        if path.name in done:
            continue
        for statement in statements(path.read_text(), db):
            try:
                conn.execute(statement)
            except ClickHouseError as exc:
                raise DeployError(f"migrate: {path.name} failed on ClickHouse: {exc}\nstatement:\n{statement}") from None
        conn.execute(f"INSERT INTO `{db}`.schema_migrations (name) VALUES", [(path.name,)])
        applied.append(path.name)
    if applied:
        say(f"migrate: applied {', '.join(applied)} to database {db}")
    return applied


def drop_database(settings: Settings) -> None:
    client(settings).execute(f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")
