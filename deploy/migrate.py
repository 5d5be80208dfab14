"""Idempotent schema migrations: ``schemas/clickhouse/NNN_name.sql`` applied in order, each once.

Applied files are recorded in ``DATABASE.schema_migrations``. A file may hold several statements, each ending
with ``;`` at the end of a line. The literal ``{database}`` is replaced by the target database's name, so views
can name their tables fully and work from whatever database an analyst is in.

On a cluster (EVENTPIPE_CLICKHOUSE_CLUSTER set) the files of ``schemas/clickhouse/cluster/`` are applied instead:
every statement runs ``ON CLUSTER`` (``{cluster}`` is the cluster's name as a string literal, ``{database_name}``
the bare database name for ZooKeeper paths), and ``schema_migrations`` is one Replicated table with every node a
replica of it. Before any statement runs, ``check_cluster`` makes sure every node answers, has the
``{shard}``/``{replica}`` macros and reaches ZooKeeper — so a misconfigured cluster stops with one message and
no table half-created on some nodes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from eventpipe.settings import REPO_ROOT, Settings

from .procs import DeployError, say

SQL_DIR = REPO_ROOT / "schemas" / "clickhouse"
CLUSTER_SQL_DIR = SQL_DIR / "cluster"
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
_NAME = re.compile(r"[A-Za-z0-9_]+")


def statements(sql: str, database: str, cluster: str = "") -> list[str]:
    """Split a migration file into statements, comments dropped and ``{database}`` (and, for cluster files,
    ``{database_name}`` and ``{cluster}``) substituted."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(lines).replace("{database}", f"`{database}`")
    if cluster:
        text = text.replace("{database_name}", database).replace("{cluster}", f"'{cluster}'")
    return [s.strip() for s in _STATEMENT_END.split(text) if s.strip()]


def client(settings: Settings, database: str | None = None):
    from clickhouse_driver import Client

    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password, database=database or "default",
                  connect_timeout=5, send_receive_timeout=60)


def migrate(settings: Settings, sql_dir: Path | None = None) -> list[str]:
    """Apply every migration not yet applied; returns the names applied now. Blocks; raises DeployError."""
    from clickhouse_driver.errors import Error as ClickHouseError

    db, cluster = settings.clickhouse_database, settings.clickhouse_cluster
    if not _NAME.fullmatch(db) or cluster and not _NAME.fullmatch(cluster):
        raise DeployError(f"migrate: EVENTPIPE_CLICKHOUSE_DATABASE={db!r} and EVENTPIPE_CLICKHOUSE_CLUSTER="
                          f"{cluster!r} may hold only letters, digits and _")
    if sql_dir is None:
        sql_dir = CLUSTER_SQL_DIR if cluster else SQL_DIR
    if cluster:
        check_cluster(settings)
        on_cluster = f" ON CLUSTER '{cluster}'"
        # every node a replica of one table: the list of applied files reads the same from any node
        engine = (f"ReplicatedMergeTree('/clickhouse/tables/{db}/all/schema_migrations', '{{shard}}-{{replica}}') "
                  "ORDER BY name")
    else:
        on_cluster, engine = "", "MergeTree() ORDER BY name"
    try:
        admin = client(settings)
        admin.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`{on_cluster}")
        admin.execute(f"CREATE TABLE IF NOT EXISTS `{db}`.schema_migrations{on_cluster} "
                      f"(name String, applied_at DateTime DEFAULT now()) ENGINE = {engine}")
        done = {row[0] for row in admin.execute(f"SELECT name FROM `{db}`.schema_migrations")}
    except (ClickHouseError, OSError, EOFError) as exc:
        raise DeployError(f"migrate: cannot reach ClickHouse at {settings.clickhouse_host}:"
                          f"{settings.clickhouse_port}: {exc}") from None
    applied = []
    conn = client(settings, db)
    for path in sorted(sql_dir.glob("*.sql")):
        if path.name in done:
            continue
        for statement in statements(path.read_text(), db, cluster):
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
    on_cluster = f" ON CLUSTER '{settings.clickhouse_cluster}'" if settings.clustered else ""
    client(settings).execute(f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`{on_cluster}")


def check_cluster(settings: Settings) -> list[tuple[str, int]]:
    """Check, before any DDL, that the cluster named by EVENTPIPE_CLICKHOUSE_CLUSTER can hold eventpipe's tables:
    it is in the ``remote_servers`` of the server we talk to, and every one of its nodes answers, defines the
    ``{shard}`` and ``{replica}`` macros and reaches ZooKeeper. Returns the nodes (host, port). Blocks; raises
    DeployError naming what is wrong and what to set."""
    from clickhouse_driver.errors import Error as ClickHouseError

    name, entry = settings.clickhouse_cluster, f"{settings.clickhouse_host}:{settings.clickhouse_port}"
    try:
        rows = client(settings).execute("SELECT cluster, host_name, port FROM system.clusters")
    except (ClickHouseError, OSError, EOFError) as exc:  # transient or misaddressed: the user decides
        raise DeployError(f"migrate: cannot reach ClickHouse at {entry}: {exc}") from None
    nodes = [(host, port) for cluster, host, port in rows if cluster == name]
    if not nodes:
        known = ", ".join(sorted({row[0] for row in rows})) or "none"
        raise DeployError(f"migrate: cluster {name!r} (EVENTPIPE_CLICKHOUSE_CLUSTER) is not in the remote_servers of "
                          f"the ClickHouse server at {entry} (clusters there: {known}). Add it to <remote_servers> "
                          "in every node's config, or set EVENTPIPE_CLICKHOUSE_CLUSTER to one of those.")
    for host, port in nodes:
        node = dataclasses.replace(settings, clickhouse_host=host, clickhouse_port=port)
        where = f"node {host}:{port} of cluster {name!r}"
        try:
            conn = client(node)
            macros = {row[0] for row in conn.execute("SELECT macro FROM system.macros")}
        except (ClickHouseError, OSError, EOFError) as exc:  # a node down: ON CLUSTER would create on the others only
            raise DeployError(f"migrate: {where} does not answer ({exc}); every node must be up to create the "
                              "tables on all of them — start it, or remove it from <remote_servers>.") from None
        missing = [m for m in ("shard", "replica") if m not in macros]
        if missing:
            raise DeployError(f"migrate: {where} has no {' and no '.join('{' + m + '}' for m in missing)} macro; "
                              "set <macros><shard>…</shard><replica>…</replica></macros> in its config (shard: the "
                              "same on the replicas of one shard; replica: different on each of them).")
        try:
            conn.execute("SELECT count() FROM system.zookeeper WHERE path = '/'")
        except ClickHouseError as exc:  # ZooKeeper missing from the config or unreachable: replication cannot work
            detail = " ".join(str(exc).split("Stack trace")[0].split())[:200]
            raise DeployError(f"migrate: {where} cannot reach ZooKeeper ({detail}); start ZooKeeper and set "
                              "<zookeeper><node><host>…</host><port>…</port></node></zookeeper> in its config.") from None
    return nodes
