"""The local cluster (``make cluster-up`` / ``make cluster-down``): 3 Kafka brokers, ZooKeeper, 2 × 2 ClickHouse.

Same rules as ``make run``: real servers, pid files, loopback only, data under ``.local/cluster/``. Ports are
fixed (see the constants) and apart from the single-node stack's, so both can run side by side. The gateway and
the workers started here get ``cluster_settings`` through their environment.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from eventpipe.settings import Settings

from . import clickhouse, kafka, procs, zookeeper
from .migrate import migrate
from .procs import DeployError, Service, say
from .topics import ensure_topics

NAME = "eventpipe"              # the cluster's name in the ClickHouse servers' remote_servers
ZOOKEEPER_PORT = 12181
BROKER_IDS = (1, 2, 3)
GATEWAY_PORT = 19080
METRICS_PORT = 19301            # the workers take 19301..19305
PROMETHEUS_PORT = 19390


def broker_port(node: int) -> int:
    return 19090 + node


def controller_port(node: int) -> int:
    return 19190 + node


@dataclass(frozen=True)
class Node:
    """One ClickHouse server of the cluster: replica ``replica`` of shard ``shard``."""

    shard: int
    replica: int

    @property
    def index(self) -> int:
        return (self.shard - 1) * 2 + self.replica

    @property
    def name(self) -> str:
        return f"clickhouse-s{self.shard}r{self.replica}"

    @property
    def tcp_port(self) -> int:
        return 19100 + self.index

    @property
    def http_port(self) -> int:
        return 19110 + self.index

    @property
    def interserver_port(self) -> int:
        return 19120 + self.index


NODES = tuple(Node(shard, replica) for shard in (1, 2) for replica in (1, 2))


def home(settings: Settings) -> Path:
    """The cluster's directory: ``.local/cluster`` of the single-node stack's home."""
    return settings.home_path / "cluster"


def cluster_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the local cluster (its own home, so pid files and keys are its own)."""
    if settings.clustered:
        return settings  # already a cluster's (e.g. the environment of a process started by ``up``)
    return dataclasses.replace(
        settings, home=str(home(settings)),
        kafka_bootstrap=",".join(f"127.0.0.1:{broker_port(n)}" for n in BROKER_IDS),
        topic_replication_factor=3, topic_min_insync_replicas=2,
        clickhouse_cluster=NAME, clickhouse_host="127.0.0.1", clickhouse_port=NODES[0].tcp_port,
        clickhouse_http_port=NODES[0].http_port,
        clickhouse_alt_hosts=",".join(f"127.0.0.1:{n.tcp_port}" for n in NODES[1:]),
        http_port=GATEWAY_PORT, consumer_metrics_port=METRICS_PORT, prometheus_port=PROMETHEUS_PORT)


# --- ZooKeeper -----------------------------------------------------------------------------------------------
def zookeeper_service(settings: Settings) -> Service:
    root = home(settings)
    return zookeeper.service(root / "zookeeper", root / "run", ZOOKEEPER_PORT)


# --- Kafka ---------------------------------------------------------------------------------------------------
def _broker_home(settings: Settings, node: int) -> Path:
    return home(settings) / f"kafka-{node}"


def _write_broker_config(settings: Settings, node: int) -> Path:
    root = _broker_home(settings, node)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    config = root / "server.properties"
    config.write_text(kafka.server_properties(
        f"Written by deploy/cluster.py — broker+controller {node} of {len(BROKER_IDS)}, KRaft, loopback only.", node,
        {n: controller_port(n) for n in BROKER_IDS}, broker_port(node), root / "data", settings.topic_partitions))
    return config


def _format_brokers(settings: Settings, configs: dict[int, Path]) -> None:
    """Format each broker's storage once, all with one cluster id (kept in HOME/kafka-cluster-id)."""
    id_file = home(settings) / "kafka-cluster-id"
    if not id_file.exists():
        id_file.write_text(kafka.new_cluster_id() + "\n")
    cluster_id = id_file.read_text().strip()
    for node, config in configs.items():
        root = _broker_home(settings, node)
        kafka.format_storage(settings, f"kafka-{node}", config, root / "data", cluster_id, logs_dir=root / "logs")


def broker_service(settings: Settings, node: int) -> Service:
    root = _broker_home(settings, node)
    config = root / "server.properties"
    # Ready = its controller port listens: a KRaft voter cannot serve before a quorum of voters runs, so the
    # brokers are launched one after another and then waited for together (``wait_for_brokers``).
    return Service(
        name=f"kafka-{node}",
        argv=kafka.java_command(settings, "kafka.Kafka", str(config), heap="384m", logs_dir=root / "logs"),
        run_dir=home(settings) / "run", log_file=root / "logs" / "stdout.log", marker=str(config),
        ready=lambda: procs.port_open(controller_port(node)), ports=(broker_port(node), controller_port(node)),
        stop_timeout_s=20.0, what_to_do=f"free ports {broker_port(node)} and {controller_port(node)}")


def broker_count(bootstrap: str) -> int:
    """How many brokers the cluster at ``bootstrap`` reports (0 when it does not answer). Blocks briefly."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return 0  # transient: not up yet
    try:
        return len(admin.describe_cluster()["brokers"])
    except (KafkaError, OSError):
        return 0  # transient: not up yet
    finally:
        admin.close()


def wait_for_brokers(settings: Settings, want: int, timeout_s: float = 120.0) -> float:
    """Block until ``want`` brokers of the cluster ``settings`` (``cluster_settings``) name are registered;
    returns the seconds waited. Raises DeployError on timeout."""
    t0 = time.monotonic()
    while (count := broker_count(settings.kafka_bootstrap)) < want:
        if time.monotonic() - t0 > timeout_s:
            raise DeployError(f"kafka: only {count} of {want} brokers registered after {timeout_s:.0f}s; see "
                              f"{home(settings)}/kafka-*/logs/server.log")
        time.sleep(0.5)
    return time.monotonic() - t0


# --- ClickHouse ----------------------------------------------------------------------------------------------
def _node_home(settings: Settings, node: Node) -> Path:
    return home(settings) / node.name


def remote_servers_xml() -> str:
    shards = "".join(
        "        <shard><internal_replication>true</internal_replication>"
        + "".join(f"<replica><host>127.0.0.1</host><port>{n.tcp_port}</port></replica>"
                  for n in NODES if n.shard == shard) + "</shard>\n"
        for shard in sorted({n.shard for n in NODES}))
    return f"    <remote_servers>\n        <{NAME}>\n{shards}        </{NAME}>\n    </remote_servers>\n"


def _write_node_config(settings: Settings, node: Node) -> Path:
    # internal_replication: a Distributed insert writes one replica of a shard and the Replicated table copies
    # it to the other (writing both itself would double the rows whenever one of the two writes failed).
    extra = f"""    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{node.interserver_port}</interserver_http_port>
{remote_servers_xml()}    <zookeeper>
        <node><host>127.0.0.1</host><port>{ZOOKEEPER_PORT}</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <macros><shard>{node.shard:02d}</shard><replica>r{node.replica}</replica></macros>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
"""
    return clickhouse.write_config(_node_home(settings, node), node.tcp_port, node.http_port, extra,
                                   who="deploy/cluster.py")


def http_answers(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?query=SELECT%201", timeout=2) as response:
            return response.read().strip() == b"1"
    except (urllib.error.URLError, OSError):
        return False  # transient: not (yet) serving


def node_service(settings: Settings, node: Node) -> Service:
    root = _node_home(settings, node)
    config = root / "config.xml"
    return Service(
        name=node.name, argv=[clickhouse.server_binary() or "clickhouse-server", f"--config-file={config}"],
        run_dir=home(settings) / "run", log_file=root / "log" / "stdout.log", marker=str(config),
        ready=lambda: http_answers(node.http_port), ready_timeout_s=90.0,
        ports=(node.tcp_port, node.http_port, node.interserver_port), cwd=root,
        what_to_do=f"free ports {node.tcp_port}, {node.http_port} and {node.interserver_port}")


def infra_services(settings: Settings) -> list[Service]:
    """Every server of the cluster, in start order."""
    return [zookeeper_service(settings), *(broker_service(settings, n) for n in BROKER_IDS),
            *(node_service(settings, n) for n in NODES)]


def app_services(settings: Settings) -> list[Service]:
    """The gateway and the workers, configured for the cluster through their environment."""
    from . import stack

    cs = cluster_settings(settings)
    return [dataclasses.replace(svc, env=cs.to_env()) for svc in stack.app_services(cs)]


# --- up / down / status --------------------------------------------------------------------------------------
def infra_up(settings: Settings) -> list[str]:
    """Start the servers that are not running, create topics and tables; returns the names started now.

    On failure stops what it started and raises DeployError."""
    cs = cluster_settings(settings)
    t0 = time.monotonic()
    clickhouse.install()
    kafka.ensure_java_and_maven(maven=False)
    kafka.libs(settings)
    zookeeper.libs()
    configs = {n: _write_broker_config(settings, n) for n in BROKER_IDS}
    _format_brokers(settings, configs)
    zookeeper.write_config(home(settings) / "zookeeper", ZOOKEEPER_PORT)
    for node in NODES:
        _write_node_config(settings, node)
    started = [svc.name for svc in procs.start_all(infra_services(settings))]
    try:
        wait_for_brokers(cs, len(BROKER_IDS))
        ensure_topics(cs)
        migrate(cs)
    except BaseException:
        stop_named(settings, started)
        raise
    say(f"cluster: servers up, topics and tables there after {time.monotonic() - t0:.1f}s")
    return started


def stop_named(settings: Settings, names: list[str]) -> list[str]:
    """Stop the named services, newest first; returns the names of those that were running. The brokers stop
    together: one stopping alone waits for a controlled shutdown that its stopped peers can no longer confirm."""
    from concurrent.futures import ThreadPoolExecutor

    by_name = {svc.name: svc for svc in infra_services(settings) + app_services(settings)}
    stopped = []
    brokers = [by_name[n] for n in names if n.startswith("kafka-")]
    for name in reversed(names):
        if name.startswith("kafka-"):
            if brokers:
                with ThreadPoolExecutor(len(brokers)) as pool:
                    stopped += [svc.name for svc, done in zip(brokers, pool.map(procs.stop, brokers)) if done]
                brokers = []
        elif procs.stop(by_name[name]):
            stopped.append(name)
    return stopped


def up(settings: Settings) -> None:
    """``make cluster-up``: the servers, then the workers and the gateway pointed at them. Raises DeployError."""
    from . import stack

    t0 = time.monotonic()
    infra_up(settings)
    cs = cluster_settings(settings)
    key = stack.demo_key(cs)
    procs.start_all(app_services(settings))
    say(f"cluster: up after {time.monotonic() - t0:.1f}s. Send the seed batch:")
    print(stack.seed_curl(cs, key), flush=True)
    say(f"then query: clickhouse-client --port {NODES[0].tcp_port} -d {cs.clickhouse_database} "
        "-q \"SELECT * FROM sessions_final FORMAT Vertical\"; stop with `make cluster-down`")


def down(settings: Settings) -> None:
    """``make cluster-down``: stop every process of the cluster (by pid file), apps first."""
    stopped = stop_named(settings, [svc.name for svc in infra_services(settings) + app_services(settings)])
    say(f"cluster: stopped {', '.join(stopped)}" if stopped else "cluster: nothing of it was running")


def status_rows(settings: Settings) -> list[tuple[str, str, str, str]]:
    """``make status`` rows of the cluster's processes (empty when the cluster was never set up here)."""
    if not home(settings).exists():
        return []
    rows = []
    for svc in infra_services(settings) + app_services(settings):
        pid = procs.running_pid(svc)
        ready = pid is not None and svc.ready()
        rows.append((f"cluster/{svc.name}", "running" if pid else "stopped", str(pid or "-"), "ready" if ready else "-"))
    return rows


def run_tests(settings: Settings, pytest_args: list[str]) -> int:
    """``make test-cluster``: the cluster's servers up, pytest over tests/cluster, stop what was started here."""
    import sys

    started = infra_up(settings)
    try:
        return subprocess.call([sys.executable, "-m", "pytest", "--cluster", "tests/cluster", *pytest_args],
                               cwd=Path(__file__).resolve().parent.parent)
    finally:
        stop_named(settings, started)
