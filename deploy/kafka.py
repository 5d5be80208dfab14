"""The local Apache Kafka: jars from Maven Central into a cache, one KRaft broker+controller on 127.0.0.1:9092.

The jars go to ``$XDG_CACHE_HOME/eventpipe/kafka-VERSION`` (default ``~/.cache``), outside the work tree, so a
fresh clone on the same machine reuses them. Storage under ``.local/kafka/data`` is formatted once.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from eventpipe.settings import Settings

from . import apt, maven, procs
from .procs import DeployError, Service, say

FILES = Path(__file__).resolve().parent / "files"
BROKER_PORT = 9092
CONTROLLER_PORT = 9093


JAVA_MIN = 17  # Kafka 4.x brokers need Java 17+
# Debian's Java packages carry the version in their name and each release ships different ones (bookworm: 17,
# trixie: 21); `apt.install` takes the first one apt has. default-jdk-headless last: its version is checked after.
# JDKs, not JREs: Kafka needs only a JRE, but `make test` compiles Java (Zidium's client, the Avro interop and the
# partitioner checks), and a JDK is a superset.
JAVA_PACKAGES = ("openjdk-17-jdk-headless", "openjdk-21-jdk-headless", "openjdk-25-jdk-headless",
                 "default-jdk-headless")
NOT_NEEDED = "or point EVENTPIPE_KAFKA_BOOTSTRAP at an existing Kafka."


def java_major() -> int | None:
    """The major version of the `java` on PATH (8 for "1.8.0_392"), or None without one. Blocks briefly."""
    if shutil.which("java") is None:
        return None
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # Java 8 and older say 1.x


def ensure_java_and_maven(maven: bool) -> None:
    """Make sure `java` (17+) and, when ``maven``, `mvn` are on PATH, installing Debian's packages for what is
    missing (one apt-get run). Blocks (minutes when installing). Raises DeployError when that cannot be done."""
    wanted: list[apt.Wanted] = []
    reasons = []
    found = java_major()
    if found is None or found < JAVA_MIN:
        wanted.append(JAVA_PACKAGES)
        reasons.append(f"Kafka needs Java {JAVA_MIN}+ and " +
                       ("`java` is not on PATH" if found is None else f"the `java` on PATH is Java {found}"))
    if maven and shutil.which("mvn") is None:
        wanted.append("maven")
        reasons.append("fetching Kafka needs Maven and `mvn` is not on PATH")
    if not wanted:
        return
    apt.install("kafka", "; ".join(reasons), wanted, NOT_NEEDED)
    found = java_major()
    if found is None:
        raise DeployError(f"kafka: apt-get finished but `java` is still not on PATH; add it, {NOT_NEEDED}")
    if found < JAVA_MIN:
        raise DeployError(f"kafka: after installing Java, the `java` on PATH is Java {found} and Kafka needs Java "
                          f"{JAVA_MIN}+. Select a newer one (update-alternatives --config java), {NOT_NEEDED}")
    if maven and shutil.which("mvn") is None:
        raise DeployError(f"kafka: apt-get finished but `mvn` is still not on PATH; {NOT_NEEDED}")


def cache_root() -> Path:
    """Where fetched jars are kept across clones: ``$XDG_CACHE_HOME/eventpipe`` (default ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eventpipe"


def cache_dir(settings: Settings) -> Path:
    return cache_root() / f"kafka-{settings.kafka_version}"


def libs(settings: Settings) -> Path:
    """The directory of Kafka's jars, fetching them with Maven the first time. Blocks; raises DeployError."""
    target = cache_dir(settings) / "libs"
    if not (target / ".complete").exists():
        ensure_java_and_maven(maven=True)
    return maven.fetch_jars("kafka", f"Kafka {settings.kafka_version}", FILES / "kafka-pom.xml",
                            {"kafka.version": settings.kafka_version}, target, "kafka_2.13-",
                            "that EVENTPIPE_KAFKA_VERSION names a release, " + NOT_NEEDED)


def _home(settings: Settings) -> Path:
    return settings.home_path / "kafka"


def java_command(settings: Settings, main_class: str, *args: str, heap: str = "256m",
                 logs_dir: Path | None = None) -> list[str]:
    """A java command line running one of Kafka's main classes (tools included) with the cached jars, logging
    under ``logs_dir`` (default the local broker's).

    Call ``libs(settings)`` first to make sure the jars are there."""
    return ["java", f"-Xmx{heap}", "-cp", str(cache_dir(settings) / "libs" / "*"),
            f"-Dlog4j2.configurationFile={FILES / 'kafka-log4j2.properties'}",
            f"-Dkafka.logs.dir={logs_dir or _home(settings) / 'logs'}", main_class, *args]


def server_properties(header: str, node: int, voters: dict[int, int], broker_port: int, data: Path,
                      partitions: int) -> str:
    """A KRaft broker+controller's server.properties on loopback. ``voters``: node id -> controller port of
    every voter; with more than one, internal topics and defaults get replication 3 / min ISR 2 (else 1 / 1)."""
    replicated = len(voters) > 1
    rf, isr = (3, 2) if replicated else (1, 1)
    cluster_defaults = ("default.replication.factor=3\nmin.insync.replicas=2\nunclean.leader.election.enable=false\n"
                        if replicated else "")
    return f"""# {header}
process.roles=broker,controller
node.id={node}
controller.quorum.voters={",".join(f"{n}@127.0.0.1:{port}" for n, port in voters.items())}
listeners=PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{voters[node]}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions={partitions}
{cluster_defaults}offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=12
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
"""


def format_storage(settings: Settings, name: str, config: Path, data: Path, cluster_id: str,
                   logs_dir: Path | None = None) -> None:
    """Format a broker's storage with ``cluster_id`` unless it already is. Raises DeployError."""
    if (data / "meta.properties").exists():
        return
    say(f"{name}: formatting storage in {data} (cluster {cluster_id})")
    out = subprocess.run(java_command(settings, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                      "-c", str(config), logs_dir=logs_dir),
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise DeployError(f"{name}: formatting storage failed:\n{out.stdout}{out.stderr}")


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _write_config(settings: Settings) -> Path:
    home = _home(settings)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(server_properties("Written by deploy/kafka.py — single node, KRaft, loopback only.", 1,
                                        {1: CONTROLLER_PORT}, BROKER_PORT, home / "data", settings.topic_partitions))
    return config


def _format_once(settings: Settings, config: Path) -> None:
    format_storage(settings, "kafka", config, _home(settings) / "data", new_cluster_id())


def answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000))
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def service(settings: Settings) -> Service:
    config = _home(settings) / "server.properties"
    return Service(
        name="kafka",
        argv=java_command(settings, "kafka.Kafka", str(config), heap=settings.kafka_heap),
        run_dir=settings.home_path / "run", log_file=_home(settings) / "logs" / "stdout.log",
        marker=str(config), ready=lambda: answers(settings.kafka_bootstrap),
        ports=(BROKER_PORT, CONTROLLER_PORT), stop_timeout_s=45.0,
        what_to_do="point EVENTPIPE_KAFKA_BOOTSTRAP at a running Kafka to use it instead")


def start(settings: Settings) -> bool:
    """Install Java when needed, fetch, configure, format and start the local broker; True if started now.

    Blocks until the broker answers. Raises DeployError."""
    ensure_java_and_maven(maven=False)  # cached jars need no Maven, but the broker always needs Java
    libs(settings)
    config = _write_config(settings)
    _format_once(settings, config)
    return procs.start(service(settings))


def stop(settings: Settings) -> bool:
    return procs.stop(service(settings))


def is_running(settings: Settings) -> bool:
    return procs.running_pid(service(settings)) is not None
