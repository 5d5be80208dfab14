"""The pipeline with Prometheus, as ``make run`` brings it up, under load: every dashboard panel's and every alert's
expression is evaluated by the running Prometheus, and the failure alerts go pending on real failures.

``python -m deploy up`` runs as a child on this run's topics and database, on free ports, with its own HOME; Kafka
and ClickHouse are passed as external servers (``localhost``), so it starts none of them. Beside it run two broken
twins, scraped by the same Prometheus: a gateway whose Kafka does not exist (503s) and an events worker whose
ClickHouse does not exist (paused, lag, nothing committed), plus a scrape target nobody listens on.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
import yaml
from kafka import KafkaProducer

from deploy import prometheus
from deploy.topics import delete_topics, ensure_topics
from eventpipe.codec import EVENT
from eventpipe.settings import REPO_ROOT, Settings

from .consumers.conftest import settings_env
from .consumers.streams import event

DASHBOARD = prometheus.MONITORING / "grafana" / "eventpipe.json"
SCRAPE_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports (the workers take base+0..3)."""
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def as_external(settings: Settings) -> Settings:
    """The same servers spelled so that ``deploy up`` treats them as external: it uses them, starts nothing."""
    return dataclasses.replace(
        settings,
        kafka_bootstrap=settings.kafka_bootstrap.replace("127.0.0.1", "localhost"),
        clickhouse_host=settings.clickhouse_host.replace("127.0.0.1", "localhost"))


def deploy(env: dict[str, str], command: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", command], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout_s)


@dataclasses.dataclass
class Stack:
    settings: Settings
    url: str
    key: str
    broken_gateway_port: int
    broken_topics: Settings
    status: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate ``expr`` now; the result vector. Fails the test on a syntax or evaluation error."""
        body = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]


def get_json(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # Prometheus answers a bad query with 400 and a JSON error body
        return json.loads(exc.read())


def post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus.install()  # a clear DeployError here rather than a pipeline silently without Prometheus
    home = tmp_path_factory.mktemp("prometheus-stack")
    ours = dataclasses.replace(
        as_external(settings), home=str(home), http_port=free_port(), consumer_metrics_port=free_port_run(4),
        prometheus_port=free_port(), gateway_workers=1, batch_seconds=0.5)
    env = settings_env(ours)
    twins: list[subprocess.Popen] = []
    broken_topics = dataclasses.replace(settings, topic_prefix=settings.topic_prefix + "_broken")
    ensure_topics(broken_topics)
    fill_broken_topic(broken_topics)
    try:
        up = deploy(env, "up")
        assert up.returncode == 0, f"deploy up failed:\n{up.stdout}\n{up.stderr[-3000:]}"
        assert f"prometheus: {prometheus.url(ours)}" in up.stderr
        status = deploy(env, "status", timeout_s=60).stdout

        # The broken twins. A gateway with no Kafka answers 503 within its publish timeout.
        broken_gateway_port = free_port()
        gateway_env = settings_env(ours, kafka_bootstrap=f"127.0.0.1:{free_port()}", http_port=broken_gateway_port,
                                   publish_timeout_s=1.0)
        # An events worker with no ClickHouse, one record per batch: its first write fails and it pauses, with
        # the rest of its topic as lag. Its own topics and group, so the real events worker is not disturbed.
        broken_worker_port = free_port()
        worker_env = settings_env(broken_topics, clickhouse_port=free_port(), batch_rows=1, batch_seconds=0.2,
                                  home=str(home))
        logs = home / "logs"
        for argv, child_env, name in (
                ([sys.executable, "-m", "ingest_gateway", "serve"], gateway_env, "broken-gateway"),
                ([sys.executable, "-m", "consumers", "events", "--metrics-port", str(broken_worker_port)], worker_env,
                 "broken-events")):
            with open(logs / f"{name}.log", "ab") as log:
                twins.append(subprocess.Popen(argv, env=child_env, cwd=REPO_ROOT, stdout=log, stderr=log))

        # Prometheus scrapes the twins and a target nobody listens on too, every second.
        jobs = prometheus.targets(ours)
        jobs["gateway"].append(f"127.0.0.1:{broken_gateway_port}")
        jobs["consumers"] += [f"127.0.0.1:{broken_worker_port}", f"127.0.0.1:{free_port()}"]
        prometheus.write_config(ours, jobs, scrape_interval_s=SCRAPE_S)
        prometheus.reload(ours)
        yield Stack(ours, prometheus.url(ours), (home / "demo_api_key").read_text().strip(), broken_gateway_port,
                    broken_topics, status)
    finally:
        for proc in twins:
            proc.terminate()
        for proc in twins:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        down = deploy(env, "down", timeout_s=180)
        delete_topics(broken_topics, list(broken_topics.topics))
        assert down.returncode == 0, down.stderr


def send_load(stack: Stack) -> None:
    """Valid and invalid v3 batches, join records (some ignored, so dead-lettered), an undecodable record straight
    to Kafka (dead-lettered by the events worker), and requests to the gateway that has no Kafka (503). Blocks."""
    s = stack.settings
    base = f"http://127.0.0.1:{s.http_port}"
    now = int(time.time())
    for i in range(30):
        batch = []
        for j in range(20):
            session = f"sess{i:04d}x{j:04d}"
            batch.append({"action": "START", "type": "APPSTART", "timestamp": now - 60, "session": session,
                          "entities": [{"key": "app", "value": "load"}]})
            if j % 2:
                batch.append({"action": "END", "type": "APPSTART", "timestamp": now, "session": session,
                              "entities": []})
        assert post(f"{base}/v3/events", json.dumps({"data": batch}).encode(), "application/json") == 401
        status = post(f"{base}/v3/events", urllib.parse.urlencode({"apikey": stack.key, "data": json.dumps(batch)})
                      .encode(), "application/x-www-form-urlencoded")
        assert status == 200
        bad = [{"action": "START", "type": "NOT-A-TYPE", "timestamp": now, "entities": []}]
        assert post(f"{base}/v3/events", urllib.parse.urlencode({"apikey": stack.key, "data": json.dumps(bad)})
                    .encode(), "application/x-www-form-urlencoded") == 422
        records = [{"ComponentId": str(uuid.UUID(int=i + 1)), "TypeId": str(uuid.UUID(int=7)), "JoinInterval": 600,
                    "Importance": "Alarm", "Message": "load"},
                   {"TypeId": str(uuid.UUID(int=7))}]  # no ComponentId: ignored, dead-lettered
        body = json.dumps({"Token": {"SecretKey": stack.key}, "Data": records}).encode()
        assert post(f"{base}/api/JoinEvents", body, "application/json") == 200
    broken = f"http://127.0.0.1:{stack.broken_gateway_port}/v3/events"
    form = urllib.parse.urlencode({"apikey": stack.key, "data": json.dumps(batch[:1])}).encode()
    for _ in range(6):  # spread over several scrapes: rate() counts increases between samples, not the first one
        assert post(broken, form, "application/x-www-form-urlencoded") == 503
        time.sleep(SCRAPE_S)
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    try:
        producer.send(s.topic_events, value=b"not avro at all").get(timeout=30)
    finally:
        producer.close(10)


def fill_broken_topic(settings: Settings, count: int = 20) -> None:
    """``count`` valid events for the broken worker, produced before it starts, in one partition and one Kafka
    batch: its first fetch sees all of them (the high-water mark its lag is measured against), it takes one
    (one record per batch), fails to write it and pauses, and the rest stay as lag. (Paused partitions are not
    fetched, so records produced after the pause would not show as lag.)"""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=200)
    try:
        for n in range(count):
            record = {**event("broken", "START", int(time.time()), f"broken{n:05d}"),
                      "received_at": datetime.now(timezone.utc)}
            producer.send(settings.topic_events, key=b"broken", value=EVENT.encode(record))
        producer.flush(30)
    finally:
        producer.close(10)


def dashboard_expressions() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(f"{p['title']} / {t['refId']}", t["expr"]) for p in panels for t in p["targets"]]


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load(prometheus.ALERT_RULES.read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"] if "alert" in r}


COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)")


def without_thresholds(expr: str) -> str:
    """``expr`` with every comparison made a ``bool`` one, so it returns the watched series whatever their values
    (``x > 5`` → ``x > bool 5``). Label matchers inside ``{…}`` are left alone."""
    out, depth, quoted = [], 0, False
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == '"' and (i == 0 or expr[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "{}":
            depth += 1 if ch == "{" else -1
        if not quoted and depth == 0:
            match = COMPARISON.match(expr, i)
            if match:
                out.append(match.group(1) + " bool")
                i = match.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def test_without_thresholds_keeps_matchers() -> None:
    assert without_thresholds('sum(x{a=~"5..", b!="<"}) > 0 and y == bool 1') == \
        'sum(x{a=~"5..", b!="<"}) > bool 0 and y == bool 1'


@pytest.fixture(scope="module")
def loaded(stack: Stack) -> Stack:
    send_load(stack)

    # every worker wrote, dead letters were written, the twins misbehave: then every rate() has points
    conditions = {"all four workers wrote": "count(count by (worker) (eventpipe_consumer_commits_total)) >= 4",
                  "a worker dead-lettered": "eventpipe_consumer_dead_letters_total",
                  "dead letters were written": 'eventpipe_consumer_rows_written_total{table="dead_letters"}',
                  "the broken worker paused": "eventpipe_consumer_paused == 1",
                  "the broken gateway answered 503": 'eventpipe_gateway_requests_total{status="503"}',
                  "the broken worker has lag": "sum by (worker) (eventpipe_consumer_lag) > 0"}
    missing = list(conditions)
    deadline = time.monotonic() + 120
    while missing and time.monotonic() < deadline:
        missing = [what for what, expr in conditions.items() if not stack.query(expr)]
        time.sleep(0.5)
    assert not missing, f"after 120 s, Prometheus does not show: {missing}"
    time.sleep(4 * SCRAPE_S)  # a few more scrapes so every rate() has two points after the last change
    return stack


def test_make_status_shows_prometheus_and_its_url(stack: Stack) -> None:
    line = next(line for line in stack.status.splitlines() if line.startswith("prometheus"))
    assert "running" in line and f"ready {stack.url}" in line, stack.status


def test_prometheus_scrapes_the_gateway_and_every_worker(loaded: Stack) -> None:
    targets = get_json(f"{loaded.url}/api/v1/targets")["data"]["activeTargets"]
    health = {t["scrapeUrl"].split("/")[2]: t["health"] for t in targets}
    for job, addresses in prometheus.targets(loaded.settings).items():
        for address in addresses:
            assert health.get(address) == "up", f"{job} {address}: {health}"


def test_every_dashboard_panel_returns_series(loaded: Stack) -> None:
    empty = [name for name, expr in dashboard_expressions() if not loaded.query(expr)]
    assert not empty, f"panels whose expression returns no series: {empty}"


def test_every_alert_expression_evaluates_and_watches_existing_series(loaded: Stack) -> None:
    empty = []
    for name, expr in alert_expressions().items():
        loaded.query(expr)  # as written: valid PromQL
        if not loaded.query(without_thresholds(expr)):
            empty.append(name)
    assert not empty, f"alerts whose watched series do not exist: {empty}"


def test_every_metric_name_used_is_exported(loaded: Stack) -> None:
    exported = set(get_json(f"{loaded.url}/api/v1/label/__name__/values")["data"])
    used = set()
    for _, expr in [*dashboard_expressions(), *alert_expressions().items()]:
        used |= set(re.findall(r"\b(eventpipe_[a-z_]+)\b", expr))
    assert used - exported == set(), f"names in the rules or dashboard that no process exports: {used - exported}"


def test_the_failures_make_their_alerts_pending_and_the_healthy_pipeline_none(loaded: Stack) -> None:
    def active() -> dict[str, set[str]]:
        alerts = get_json(f"{loaded.url}/api/v1/alerts")["data"]["alerts"]
        found: dict[str, set[str]] = {}
        for a in alerts:
            found.setdefault(a["labels"]["alertname"], set()).add(a["labels"].get("instance", ""))
        return found

    broken_gateway = f"127.0.0.1:{loaded.broken_gateway_port}"
    expected = {"EventpipeTargetDown", "EventpipeWorkerPaused", "EventpipeWorkerNotCommitting",
                "EventpipeGatewayErrors"}
    deadline = time.monotonic() + 60
    found = active()
    while not expected <= set(found) and time.monotonic() < deadline:
        time.sleep(0.5)
        found = active()
    assert expected <= set(found), f"not pending or firing after 60 s: {expected - set(found)}; active: {found}"
    assert found["EventpipeGatewayErrors"] == {broken_gateway}
    healthy = set(prometheus.targets(loaded.settings)["consumers"]) | set(prometheus.targets(loaded.settings)["gateway"])
    for name, instances in found.items():
        assert not instances & healthy, f"{name} is active for a healthy process: {instances & healthy}"
    assert set(found) == expected, f"unexpected alerts: {set(found) - expected}"
