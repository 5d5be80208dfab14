"""Prometheus metrics of a worker process, served on its /metrics port. All carry the ``worker`` label."""

from __future__ import annotations

import logging
import re

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

RECORDS = Counter("eventpipe_consumer_records_total", "Records consumed, by outcome "
                  "(written, dead_letter, applied, no_change, dropped_late, single_event, invalid, undecodable).",
                  ["worker", "outcome"])
ROWS = Counter("eventpipe_consumer_rows_written_total", "Rows inserted into ClickHouse, by table.",
               ["worker", "table"])
DEAD_LETTERS = Counter("eventpipe_consumer_dead_letters_total", "Dead letters sent, by reason (the field or "
                       "failure named before the first ':').", ["worker", "reason"])
BATCH_RECORDS = Histogram("eventpipe_consumer_batch_records", "Records per flushed batch.", ["worker"],
                          buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000))
INSERT_SECONDS = Histogram("eventpipe_consumer_insert_seconds", "Latency of one ClickHouse INSERT.",
                           ["worker", "table"])
FLUSH_SECONDS = Histogram("eventpipe_consumer_flush_seconds", "Latency of a whole write step "
                          "(rows, dead letters, state, commit).", ["worker"])
FAILURES = Counter("eventpipe_consumer_transient_failures_total", "Transient Kafka/ClickHouse failures, by step.",
                   ["worker", "step"])
COMMITS = Counter("eventpipe_consumer_commits_total", "Kafka offset commits that succeeded (each after its "
                  "batch was written to ClickHouse).", ["worker"])
COMMITTED = Gauge("eventpipe_consumer_committed_offset", "Last committed offset (next offset to read) per partition.",
                  ["worker", "topic", "partition"])
PAUSED = Gauge("eventpipe_consumer_paused", "1 while the worker is paused waiting for Kafka or ClickHouse.",
               ["worker"])
LAG = Gauge("eventpipe_consumer_lag", "Records behind the end of the partition (last known high-water mark).",
            ["worker", "topic", "partition"])
OPEN_KEYS = Gauge("eventpipe_consumer_open_keys", "Keys held in state: open sessions (sessions) or open join "
                  "windows (joins).", ["worker"])
LOOKUPS = Counter("eventpipe_consumer_state_lookups_total", "Keys looked up in consumer_state before their "
                  "records could be applied (UPDATE/END of sessions no longer in memory).", ["worker"])
WATERMARK = Gauge("eventpipe_consumer_watermark_seconds", "Event-time watermark per partition.",
                  ["worker", "partition"])


def reason_label(reason: str) -> str:
    """A bounded label for a dead-letter reason: the field or failure before the first ':', hex ids elided."""
    return re.sub(r"\b[0-9a-f]{16}\b", "<fingerprint>", reason.split(":", 1)[0])


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics HTTP server on ``port`` (0: any free port; a busy port falls back to a free one, so
    more instances of a worker can run on one host). Returns the port. Blocks only to bind."""
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:  # operator input: the port is taken by another instance
        log.warning("metrics port busy, using a free one", extra={"port": port, "error": str(exc)})
        server, _ = start_http_server(0, addr=host)
    return server.server_port
