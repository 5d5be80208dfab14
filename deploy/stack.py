"""The whole local stack: infrastructure (Kafka, ClickHouse, topics, tables) and the eventpipe processes.

``up`` is idempotent (what runs is left alone); ``down`` stops exactly what the pid files name; a service whose
address points elsewhere (EVENTPIPE_KAFKA_BOOTSTRAP / EVENTPIPE_CLICKHOUSE_HOST) is used, never started.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

from consumers.__main__ import METRICS_PORT_OFFSET
from eventpipe.settings import Settings

from . import clickhouse, cluster, kafka, procs, prometheus
from .migrate import migrate
from .procs import DeployError, Service, say
from .topics import ensure_topics

WORKERS = tuple(METRICS_PORT_OFFSET)  # events, sessions, joins, deadletters, components
SEED_BATCH = [
    {"action": "START", "type": "APPSTART", "timestamp": 1365772427, "session": "8nc92io9q",
     "entities": [{"key": "app", "value": "BigBrother"}, {"key": "package", "value": "de.thues.bigbrother"}]},
    {"action": "END", "type": "APPSTART", "timestamp": 1365772533, "session": "8nc92io9q",
     "entities": [{"key": "app", "value": "BigBrother"}, {"key": "package", "value": "de.thues.bigbrother"}]},
]


def infra_up(settings: Settings) -> list[str]:
    """Kafka and ClickHouse up (local ones started if needed), topics and tables created.

    Returns the names of the services started now, so a caller (``make test``) can stop just those.
    On failure stops what it started and raises DeployError.
    """
    started: list[str] = []
    try:
        if settings.local_kafka:
            if kafka.start(settings):
                started.append("kafka")
        else:
            say(f"kafka: using external {settings.kafka_bootstrap}")
            if not kafka.answers(settings.kafka_bootstrap, timeout_s=10):
                raise DeployError(f"kafka: no broker answers at EVENTPIPE_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}")
        if settings.local_clickhouse:
            if clickhouse.start(settings):
                started.append("clickhouse")
        else:
            say(f"clickhouse: using external {settings.clickhouse_host}:{settings.clickhouse_port}")
        ensure_topics(settings)
        migrate(settings)
    except BaseException:
        stop_services(settings, started)
        raise
    return started


def stop_services(settings: Settings, names: list[str]) -> None:
    for name in reversed(names):
        {"kafka": kafka.stop, "clickhouse": clickhouse.stop}[name](settings)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def gateway_service(settings: Settings) -> Service:
    return Service(
        name="gateway", argv=[sys.executable, "-m", "ingest_gateway", "serve"],
        run_dir=settings.home_path / "run", log_file=settings.home_path / "logs" / "gateway.log",
        marker="ingest_gateway serve", ready=lambda: _http_ok(f"http://{settings.http_host}:{settings.http_port}/healthz"),
        ports=(settings.http_port,), ready_timeout_s=30, stop_timeout_s=20,
        what_to_do="set EVENTPIPE_HTTP_PORT to another port")


def worker_service(settings: Settings, worker: str) -> Service:
    port = settings.consumer_metrics_port + METRICS_PORT_OFFSET[worker]
    return Service(
        name=f"consumer-{worker}", argv=[sys.executable, "-m", "consumers", worker, "--metrics-port", str(port)],
        run_dir=settings.home_path / "run", log_file=settings.home_path / "logs" / f"consumer-{worker}.log",
        marker=f"consumers {worker}", ready=lambda: _http_ok(f"http://127.0.0.1:{port}/metrics"),
        ports=(port,), ready_timeout_s=60, stop_timeout_s=30,
        what_to_do="set EVENTPIPE_CONSUMER_METRICS_PORT to another base port")


def app_services(settings: Settings) -> list[Service]:
    """In start order: the workers first, the gateway (the front door) last, so a ready gateway means a ready
    pipeline."""
    return [*(worker_service(settings, w) for w in WORKERS), gateway_service(settings)]


def demo_key(settings: Settings) -> str:
    """The demo account's API key, created once and kept in HOME/demo_api_key."""
    path = settings.home_path / "demo_api_key"
    # the key store is the one of ``settings`` (the cluster's has its own home), not of this process's environment
    subprocess.run([sys.executable, "-m", "ingest_gateway", "keys", "ensure-demo", str(path)], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, **settings.to_env()})
    return path.read_text().strip()


def seed_curl(settings: Settings, key: str) -> str:
    data = json.dumps(SEED_BATCH, separators=(",", ":"))
    return (f"curl -s http://{settings.http_host}:{settings.http_port}/v3/events "
            f"--data-urlencode {shlex.quote('apikey=' + key)} --data-urlencode {shlex.quote('data=' + data)}")


def up(settings: Settings) -> None:
    """``make run``: infrastructure, demo key, gateway and the four workers. Raises DeployError."""
    infra_up(settings)
    key = demo_key(settings)
    procs.start_all(app_services(settings))
    monitoring_up(settings)
    say("eventpipe is up. Send the seed batch:")
    print(seed_curl(settings, key), flush=True)
    say(f"then query: clickhouse-client -d {settings.clickhouse_database} "
        "-q \"SELECT * FROM sessions_final FORMAT Vertical\"  (more in docs/queries.sql); stop with `make stop`")


def monitoring_up(settings: Settings) -> None:
    """Prometheus beside the pipeline: the local one installed and started, or an external one checked.

    Prometheus is optional: when it cannot be installed this says so once and returns. Blocks until it is
    ready; raises DeployError when it cannot start (port taken, exits) — the pipeline stays up."""
    if not settings.local_prometheus:
        config = prometheus.write_config(settings)
        answering = "answering" if prometheus.answers(settings) else "NOT answering"
        say(f"prometheus: using external {prometheus.url(settings)} ({answering}); give it the scrape jobs of "
            f"{config} and the rules of {prometheus.ALERT_RULES}")
        return
    try:
        prometheus.install()
    except DeployError as exc:
        say(f"prometheus: not started, running without it (metrics stay on each /metrics): {exc}")
        return
    prometheus.start(settings)
    say(f"prometheus: {prometheus.url(settings)} (alerts: {prometheus.url(settings)}/alerts)")


def down(settings: Settings) -> None:
    """``make stop``: stop every process eventpipe started (by pid file), apps first."""
    stopped = ["prometheus"] if prometheus.stop(settings) else []
    stopped += [svc.name for svc in reversed(app_services(settings)) if procs.stop(svc)]
    if kafka.stop(settings):
        stopped.append("kafka")
    if clickhouse.stop(settings):
        stopped.append("clickhouse")
    say(f"stopped: {', '.join(stopped)}" if stopped else "nothing of eventpipe's was running")


def status(settings: Settings) -> int:
    """``make status``: one line per service. Returns 0 if everything expected is up, else 1."""
    ok = True
    rows = []
    for name, local, svc, check in (
        ("kafka", settings.local_kafka, kafka.service(settings), lambda: kafka.answers(settings.kafka_bootstrap)),
        ("clickhouse", settings.local_clickhouse, clickhouse.service(settings), lambda: clickhouse.answers(settings)),
    ):
        if not local:
            answering = check()
            ok &= answering
            rows.append((name, "external", "-", "answering" if answering else "NOT ANSWERING"))
            continue
        pid = procs.running_pid(svc)
        answering = pid is not None and check()
        ok &= answering
        rows.append((name, "running" if pid else "stopped", str(pid or "-"), "ready" if answering else "-"))
    for svc in app_services(settings):
        pid = procs.running_pid(svc)
        ready = pid is not None and svc.ready()
        ok &= ready
        rows.append((svc.name, "running" if pid else "stopped", str(pid or "-"), "ready" if ready else "-"))
    row, prometheus_ok = _prometheus_status(settings)
    rows.append(row)
    ok &= prometheus_ok
    # the local cluster's rows, when it was ever set up here (`make cluster-up`); informational: the single-node
    # stack's health decides the exit code
    rows += cluster.status_rows(settings)
    width = max(22, *(len(row[0]) for row in rows))
    for row in rows:
        print(f"{row[0]:<{width}} {row[1]:<9} pid {row[2]:<8} {row[3]}")
    return 0 if ok else 1


def _prometheus_status(settings: Settings) -> tuple[tuple[str, str, str, str], bool]:
    """The status row of Prometheus (its URL last) and whether it is as expected: a local Prometheus that is not
    installed is not expected (``make run`` runs without it)."""
    address = prometheus.url(settings)
    if not settings.local_prometheus:
        answering = prometheus.answers(settings)
        return ("prometheus", "external", "-", f"{'answering' if answering else 'NOT ANSWERING'} {address}"), answering
    if prometheus.binary() is None:
        return ("prometheus", "missing", "-", "not installed (make run installs it as root)"), True
    pid = procs.running_pid(prometheus.service(settings))
    ready = pid is not None and prometheus.answers(settings)
    return ("prometheus", "running" if pid else "stopped", str(pid or "-"), f"{'ready' if ready else '-'} {address}"), ready


def run_tests(settings: Settings, pytest_args: list[str]) -> int:
    """``make test``: bring up what the suite needs, run pytest, stop what was started here."""
    started = infra_up(settings)
    if started:
        say(f"started for this test run: {', '.join(started)} (stopped again afterwards)")
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=Path(__file__).resolve().parent.parent)
    finally:
        stop_services(settings, started)
