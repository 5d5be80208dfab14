"""The local ClickHouse server: Debian's package when absent, a project-local config, loopback only.

Data, logs and tmp live under ``.local/clickhouse``; native port 9000, HTTP 8123.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

from eventpipe.settings import Settings

from . import apt, procs
from .procs import Service

SERVER_CANDIDATES = ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server")


def server_binary() -> str | None:
    for candidate in SERVER_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def install() -> str:
    """Install Debian's clickhouse-server and clickhouse-client if no server binary exists; the binary's path.

    Blocks (minutes). Raises DeployError (see ``apt.install``) when it cannot install."""
    return apt.ensure_binary(
        "clickhouse", "ClickHouse", server_binary, ["clickhouse-server", "clickhouse-client"],
        "or install ClickHouse yourself, or point EVENTPIPE_CLICKHOUSE_HOST at a running ClickHouse server.")


def _home(settings: Settings) -> Path:
    return settings.home_path / "clickhouse"


def _write_config(settings: Settings) -> Path:
    return write_config(_home(settings), settings.clickhouse_port, settings.clickhouse_http_port)


def write_config(home: Path, tcp_port: int, http_port: int, extra: str = "", who: str = "deploy/clickhouse.py") -> Path:
    """Write ``home``/config.xml and users.xml for one loopback server; ``extra`` is more XML inside <yandex>
    (a cluster node's remote_servers, macros, zookeeper). Returns the config's path."""
    for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "users.xml").write_text(f"""<?xml version="1.0"?>
<!-- Written by {who}: one passwordless user, reachable from loopback only. -->
<yandex>
    <profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
""")
    config = home / "config.xml"
    config.write_text(f"""<?xml version="1.0"?>
<!-- Written by {who}: loopback only, everything under {home}. -->
<yandex>
    <logger>
        <level>information</level>
        <log>{home}/log/clickhouse-server.log</log>
        <errorlog>{home}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{home}/data/</path>
    <tmp_path>{home}/tmp/</tmp_path>
    <user_files_path>{home}/user_files/</user_files_path>
    <format_schema_path>{home}/format_schemas/</format_schema_path>
    <users_config>{home}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>536870912</mark_cache_size>
    <uncompressed_cache_size>536870912</uncompressed_cache_size>
{extra}</yandex>
""")
    return config


def answers(settings: Settings, timeout_s: float = 2.0) -> bool:
    """True when the server answers ``SELECT 1`` over HTTP (local) — the readiness check."""
    url = f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/?query=SELECT%201"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().strip() == b"1"
    except (urllib.error.URLError, OSError):
        return False


def service(settings: Settings) -> Service:
    config = _home(settings) / "config.xml"
    return Service(
        name="clickhouse",
        argv=[server_binary() or "clickhouse-server", f"--config-file={config}"],
        run_dir=settings.home_path / "run", log_file=_home(settings) / "log" / "stdout.log",
        marker=str(config), ready=lambda: answers(settings), ready_timeout_s=60.0,
        ports=(settings.clickhouse_port, settings.clickhouse_http_port), cwd=_home(settings),
        what_to_do="point EVENTPIPE_CLICKHOUSE_HOST at a running ClickHouse server to use it instead")


def start(settings: Settings) -> bool:
    """Install when needed, configure and start the local server; True if started now. Raises DeployError."""
    install()
    _write_config(settings)
    return procs.start(service(settings))


def stop(settings: Settings) -> bool:
    return procs.stop(service(settings))


def is_running(settings: Settings) -> bool:
    return procs.running_pid(service(settings)) is not None
