"""The local ZooKeeper of the ClickHouse cluster: Apache ZooKeeper's jars from Maven Central, one standalone server.

ClickHouse 18.16 replicates through ZooKeeper (there is no ClickHouse Keeper yet). The jars are cached beside
Kafka's (``$XDG_CACHE_HOME/eventpipe/zookeeper-VERSION``); data and logs live under the cluster's home.
"""

from __future__ import annotations

import socket
from pathlib import Path

from . import kafka, maven
from .procs import Service

VERSION = "3.8.4"
POM = Path(__file__).resolve().parent / "files" / "zookeeper-pom.xml"
HINT = "or install ZooKeeper yourself and point the ClickHouse servers' <zookeeper> at it."


def libs() -> Path:
    """The directory of ZooKeeper's jars, fetched with Maven the first time. Blocks; raises DeployError."""
    target = kafka.cache_root() / f"zookeeper-{VERSION}" / "libs"
    if not (target / ".complete").exists():
        kafka.ensure_java_and_maven(maven=True)
    return maven.fetch_jars("zookeeper", f"Apache ZooKeeper {VERSION}", POM, {"zookeeper.version": VERSION},
                            target, "zookeeper-", HINT)


def answers(port: int, timeout_s: float = 2.0) -> bool:
    """True when the server on 127.0.0.1:``port`` serves requests: its ``srvr`` four-letter answer has a
    ``Mode:`` line (``ruok`` says imok even when the server thread has died)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
            conn.sendall(b"srvr")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
            return b"Mode:" in reply
    except OSError:
        return False  # transient: not (yet) listening


def write_config(home: Path, port: int) -> None:
    """zoo.cfg and logback.xml of a standalone server with its data under ``home``, on 127.0.0.1:``port``."""
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    config = home / "zoo.cfg"
    config.write_text(f"""# Written by deploy/zookeeper.py — standalone, loopback only.
dataDir={home / 'data'}
clientPort={port}
clientPortAddress=127.0.0.1
tickTime=2000
maxClientCnxns=200
admin.enableServer=false
4lw.commands.whitelist=srvr,mntr
autopurge.purgeInterval=1
""")
    (home / "logback.xml").write_text("""<configuration>
  <appender name="out" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>[%d] %level %msg \\(%logger\\)%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="out"/></root>
</configuration>
""")


def service(home: Path, run_dir: Path, port: int) -> Service:
    """The standalone server configured by ``write_config(home, port)``."""
    config = home / "zoo.cfg"
    return Service(
        name="zookeeper",
        argv=["java", "-Xmx128m", "-cp", str(kafka.cache_root() / f"zookeeper-{VERSION}" / "libs" / "*"),
              f"-Dlogback.configurationFile={home / 'logback.xml'}", "org.apache.zookeeper.server.ZooKeeperServerMain",
              str(config)],
        run_dir=run_dir, log_file=home / "logs" / "stdout.log", marker=str(config),
        ready=lambda: answers(port), ports=(port,), ready_timeout_s=60,
        what_to_do=f"free port {port} (ZooKeeper of the local ClickHouse cluster)")
