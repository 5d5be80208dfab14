"""The gateway's Prometheus metrics (names prefixed ``eventpipe_``).

Under ``serve`` several gunicorn workers share one ``/metrics``: ``server.py`` points prometheus-client's
multiprocess mode at a fresh directory *before* this module is imported, and ``Metrics.exposition()`` then
aggregates every worker's values.  Without it (tests, a single process) each ``Metrics`` has its own registry.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The collectors of one process. ``multiprocess_dir``: aggregate the files of all workers on exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("eventpipe_gateway_requests", "HTTP requests answered, by route and status.",
                                ["route", "method", "status"], registry=r)
        self.accepted = Counter("eventpipe_gateway_events_accepted", "Events and join records acknowledged by Kafka.",
                                ["api"], registry=r)
        self.rejected = Counter("eventpipe_gateway_events_rejected",
                                "Events refused (v3: whole batches, by reason) and join records ignored "
                                "(dead-lettered, by rule).", ["api", "reason"], registry=r)
        self.publish_latency = Histogram("eventpipe_gateway_publish_latency_seconds",
                                         "Time from handing a request's records to Kafka to the last ack.",
                                         ["api", "outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("eventpipe_gateway_requests_in_flight", "Requests being handled now.",
                               registry=r, multiprocess_mode="livesum")

    def exposition(self) -> bytes:
        """The text format of every metric (all workers' under multiprocess mode)."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)
