"""The one settings object of every eventpipe process.

Everything configurable is an ``EVENTPIPE_*`` environment variable read here, once, by ``Settings.from_env()``;
nothing else in the code base reads ``os.environ``.  The README's configuration table is generated from
``FIELDS`` below (``python -m eventpipe.settings``), so the documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent


KAFKA_CLIENTS = ("confluent-kafka", "kafka-python")


class SettingsError(ValueError):
    """An ``EVENTPIPE_*`` variable has a value of the wrong form (invalid input: fix the environment)."""


def _var(name: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": "EVENTPIPE_" + name, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # --- where things live ---------------------------------------------------------------------------------
    home: str = _var("HOME", str(REPO_ROOT / ".local"), "Data, logs, pid files and keys of the local stack.")
    # --- Kafka ---------------------------------------------------------------------------------------------
    kafka_bootstrap: str = _var(
        "KAFKA_BOOTSTRAP", "127.0.0.1:9092",
        "Kafka bootstrap servers. Any value other than the default means an external Kafka: nothing is started.")
    kafka_client: str = _var(
        "KAFKA_CLIENT", "confluent-kafka", "Kafka client of the gateway and the workers: `confluent-kafka` "
        "(librdkafka, an order of magnitude faster) or `kafka-python` (pure Python).")
    kafka_version: str = _var("KAFKA_VERSION", "4.3.1", "Apache Kafka version fetched from Maven Central.")
    kafka_heap: str = _var("KAFKA_HEAP", "1g", "Java heap of the local Kafka broker.")
    topic_prefix: str = _var("TOPIC_PREFIX", "eventpipe", "Topics are PREFIX.events, PREFIX.joins, PREFIX.deadletter, PREFIX.components.")
    topic_partitions: int = _var("TOPIC_PARTITIONS", 6, "Partition count of the topics eventpipe creates.")
    topic_replication_factor: int = _var(
        "TOPIC_REPLICATION_FACTOR", 1, "Replication factor of the topics eventpipe creates (3 on a cluster; creation "
        "stops with an error when it exceeds the broker count).")
    topic_min_insync_replicas: int = _var(
        "TOPIC_MIN_INSYNC_REPLICAS", 1, "`min.insync.replicas` of the topics eventpipe creates: how many replicas "
        "an `acks=all` write must reach (2 with replication factor 3).")
    # --- ClickHouse ----------------------------------------------------------------------------------------
    clickhouse_host: str = _var(
        "CLICKHOUSE_HOST", "127.0.0.1",
        "ClickHouse server. Any value other than the default means an external server: nothing is started.")
    clickhouse_port: int = _var("CLICKHOUSE_PORT", 9000, "ClickHouse native protocol port.")
    clickhouse_http_port: int = _var("CLICKHOUSE_HTTP_PORT", 8123, "HTTP port of the local ClickHouse server.")
    clickhouse_user: str = _var("CLICKHOUSE_USER", "default", "ClickHouse user.")
    clickhouse_password: str = _var("CLICKHOUSE_PASSWORD", "", "ClickHouse password.")
    clickhouse_database: str = _var("CLICKHOUSE_DATABASE", "eventpipe", "Database holding eventpipe's tables.")
    clickhouse_cluster: str = _var(
        "CLICKHOUSE_CLUSTER", "", "ClickHouse cluster name (as in the servers' `remote_servers`). Set: the tables are "
        "Replicated local tables behind Distributed ones, created ON CLUSTER (schemas/clickhouse/cluster/). Empty: "
        "one server, plain tables.")
    clickhouse_alt_hosts: str = _var(
        "CLICKHOUSE_ALT_HOSTS", "", "More ClickHouse servers as `host:port,host:port`, tried in turn when "
        "EVENTPIPE_CLICKHOUSE_HOST does not answer (failover).")
    clickhouse_state_quorum: int = _var(
        "CLICKHOUSE_STATE_QUORUM", 1, "On a cluster: `insert_quorum` of the `consumer_state` writes — replicas "
        "of the owning shard that must hold a state write before it counts. 1: one (losing a replica stops no "
        "worker; reads of state sync a replica first, so they are never stale either way); 2: two, so a state "
        "write survives losing any one replica, at the price of the stateful workers waiting while one is away.")
    # --- gateway -------------------------------------------------------------------------------------------
    http_host: str = _var("HTTP_HOST", "127.0.0.1", "Address the gateway listens on.")
    http_port: int = _var("HTTP_PORT", 8080, "Port the gateway listens on.")
    gateway_workers: int = _var("GATEWAY_WORKERS", 2, "Gateway worker processes.")
    gateway_threads: int = _var("GATEWAY_THREADS", 8, "Threads per gateway worker process.")
    publish_timeout_s: float = _var("PUBLISH_TIMEOUT_S", 5.0, "Longest wait for Kafka to acknowledge a batch (then 503).")
    max_body_bytes: int = _var("MAX_BODY_BYTES", 10 * 1024 * 1024, "Largest request body accepted (then 413).")
    max_events: int = _var("MAX_EVENTS", 10_000, "Most events (or join records) in one request (then 413).")
    http_read_timeout_s: float = _var(
        "HTTP_READ_TIMEOUT_S", 10.0, "Longest time a client may take to send a request's head, and longest pause "
        "while it sends the body; then 408 and the connection is closed.")
    http_min_upload_bytes_per_s: int = _var(
        "HTTP_MIN_UPLOAD_BYTES_PER_S", 32_768, "Slowest upload served: a body must arrive within "
        "HTTP_READ_TIMEOUT_S plus its size at this rate.")
    http_discard_bytes: int = _var(
        "HTTP_DISCARD_BYTES", 64 * 1024 * 1024, "An oversized (413) body up to this size is read and discarded so "
        "that clients which send the whole body before reading see the 413; a larger one is cut off unread.")
    max_entities: int = _var("MAX_ENTITIES", 1_000, "Most entities in one event.")
    max_string_chars: int = _var("MAX_STRING_CHARS", 65_536, "Longest entity key or JSON text of an entity value.")
    max_json_depth: int = _var("MAX_JSON_DEPTH", 32, "Deepest nesting of an entity value.")
    max_future_s: int = _var(
        "MAX_FUTURE_S", 3_600, "How far past its receive time an event's own time may lie; further is rejected "
        "(one far-future time would move the event-time watermark and time out every open session).")
    event_types_file: str = _var(
        "EVENT_TYPES_FILE", str(REPO_ROOT / "config" / "event_types.txt"), "The fixed set of v3 event types.")
    keys_file: str = _var("KEYS_FILE", "", "Key store (hashed API keys); default HOME/keys.json.")
    # --- consumers -----------------------------------------------------------------------------------------
    batch_rows: int = _var("BATCH_ROWS", 10_000, "A consumer writes to ClickHouse after this many rows...")
    batch_seconds: float = _var("BATCH_SECONDS", 1.0, "...or after this many seconds, whichever comes first.")
    session_timeout_s: int = _var("SESSION_TIMEOUT_S", 86_400, "Event-time seconds after START without END: timed_out.")
    orphan_grace_s: int = _var("ORPHAN_GRACE_S", 3_600, "Event-time seconds an UPDATE/END waits for its START: orphan.")
    session_late_horizon_s: int = _var(
        "SESSION_LATE_HORIZON_S", 7 * 86_400, "Event-time seconds after a session's last event within which a "
        "late UPDATE/END still joins it once it has left memory (its START is never lost either way).")
    state_compact_min_rows: int = _var(
        "STATE_COMPACT_MIN_ROWS", 100_000, "A stateful worker compacts a partition's consumer_state once it wrote "
        "this many rows since the last compaction, and more than twice its live keys.")
    consumer_metrics_port: int = _var(
        "CONSUMER_METRICS_PORT", 9101, "First /metrics port of the workers (events, sessions, joins, deadletters, components "
        "take this +0..4 under `make run`; 0 picks a free port).")
    consumer_session_timeout_ms: int = _var(
        "CONSUMER_SESSION_TIMEOUT_MS", 10_000, "Kafka group session timeout of the workers: how soon the "
        "partitions of a worker that died (kill -9) move to the others.")
    consumer_instance_id: str = _var(
        "CONSUMER_INSTANCE_ID", "auto", "Static Kafka group membership (group.instance.id) of a worker, so a "
        "restarted one gets its partitions back at once instead of after the session timeout. `auto`: "
        "HOST:PORT of its /metrics port when that port is set (not 0) and bound — unique per live instance on a "
        "host, the same after a restart; `off`: dynamic membership; any other value is used as is (then it must "
        "be unique per live instance of a worker). A static member that stops does not leave the group: its "
        "partitions move to the others only after the session timeout.")
    # --- monitoring ----------------------------------------------------------------------------------------
    prometheus_host: str = _var(
        "PROMETHEUS_HOST", "127.0.0.1", "Prometheus server (`make run` starts Debian's `prometheus` on loopback). "
        "Any value other than the default means an external server: nothing is started.")
    prometheus_port: int = _var("PROMETHEUS_PORT", 9090, "Port of the Prometheus server.")
    log_level: str = _var("LOG_LEVEL", "INFO", "Log level of every process.")

    def __post_init__(self) -> None:
        if self.kafka_client not in KAFKA_CLIENTS:
            raise SettingsError(f"EVENTPIPE_KAFKA_CLIENT={self.kafka_client!r} is not a Kafka client eventpipe has; "
                                f"choose one of: {', '.join(KAFKA_CLIENTS)}")
        if not 1 <= self.topic_min_insync_replicas <= self.topic_replication_factor:
            raise SettingsError(
                f"EVENTPIPE_TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} must be between 1 and "
                f"EVENTPIPE_TOPIC_REPLICATION_FACTOR={self.topic_replication_factor}")
        for address in filter(None, self.clickhouse_alt_hosts.split(",")):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"EVENTPIPE_CLICKHOUSE_ALT_HOSTS: {address.strip()!r} is not host:port")

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build the settings from ``environ`` (default ``os.environ``); keyword overrides win. Raises SettingsError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = type(f.default)(raw)
            except ValueError:
                raise SettingsError(f"{f.metadata['env']}={raw!r} is not a valid {type(f.default).__name__}") from None
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as ``EVENTPIPE_*`` variables, for starting another eventpipe process with them."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    # --- derived values ------------------------------------------------------------------------------------
    @property
    def topic_events(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def topic_joins(self) -> str:
        return f"{self.topic_prefix}.joins"

    @property
    def topic_deadletter(self) -> str:
        return f"{self.topic_prefix}.deadletter"

    @property
    def topic_components(self) -> str:
        return f"{self.topic_prefix}.components"

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic_events, self.topic_joins, self.topic_deadletter, self.topic_components)

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_file) if self.keys_file else self.home_path / "keys.json"

    @property
    def local_kafka(self) -> bool:
        """True when Kafka is ours to start (the bootstrap is the default loopback address)."""
        return self.kafka_bootstrap == Settings.kafka_bootstrap

    @property
    def local_prometheus(self) -> bool:
        """True when Prometheus is ours to start (the host is the default loopback address)."""
        return self.prometheus_host == Settings.prometheus_host

    @property
    def local_clickhouse(self) -> bool:
        """True when the single-node ClickHouse is ours to start (the host is the default loopback address and no
        cluster is named: a cluster is started by ``make cluster-up``, never by ``make run``)."""
        return self.clickhouse_host == Settings.clickhouse_host and not self.clickhouse_cluster

    @property
    def clustered(self) -> bool:
        """True when the tables are a ClickHouse cluster's (EVENTPIPE_CLICKHOUSE_CLUSTER set)."""
        return bool(self.clickhouse_cluster)


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, str) and default.startswith(str(REPO_ROOT)):
            default = "<repo>" + default[len(str(REPO_ROOT)):]
        lines.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(lines)


README_BEGIN, README_END = "<!-- settings:begin -->", "<!-- settings:end -->"


def write_readme(readme: Path = REPO_ROOT / "README.md") -> None:
    """Replace the README's configuration table with the current one."""
    text = readme.read_text()
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_BEGIN}\n{markdown_table()}\n{README_END}{tail}")


if __name__ == "__main__":
    import sys

    write_readme() if "--write-readme" in sys.argv else print(markdown_table())
