"""The gateway's publisher over librdkafka (``confluent-kafka``, the default) — the only gateway module that
imports it. The boundary is ``publisher.py``.

One ``Producer`` per process, made on first use (after gunicorn forks), with ``acks=all``, idempotence and
Java's murmur2 partitioner (librdkafka's default, consistent_random, would put a key elsewhere than the Java
client and kafka-python do, splitting the sessions of direct producers). librdkafka hands delivery reports to
whoever calls ``poll``: one daemon thread per process polls and completes each request's pending counter, so
a request waits only for its own records — never a ``flush()`` that would wait for everybody's. A request's
records are all enqueued, then awaited against one deadline (``publish_timeout_s``): Kafka being away costs a
client the timeout and a 503, never a hang. A fatal producer error (fenced, out-of-order sequence) replaces
the producer; librdkafka reconnects by itself otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from eventpipe.librdkafka import RECOVERY

from .publisher import PublishUnavailable
from .records import Message

log = logging.getLogger(__name__)


class _Pending:
    """One request's records awaiting delivery reports (called in the polling thread, one at a time)."""

    __slots__ = ("left", "error", "done")

    def __init__(self, count: int) -> None:
        self.left = count
        self.error: KafkaError | None = None
        self.done = threading.Event()

    def __call__(self, error: KafkaError | None, _message: object) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.left -= 1
        if self.left <= 0 or error is not None:
            self.done.set()


class ConfluentPublisher:
    """``Publisher`` over librdkafka. Thread-safe: the gthread workers of one process share it."""

    POLL_S = 0.1  # the polling thread's wait when idle; delivery reports wake it at once

    def __init__(self, bootstrap: str, timeout_s: float, client_id: str = "eventpipe-gateway") -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.client_id = client_id
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._ready_cache: tuple[float, bool] = (float("-inf"), False)

    # --- the producer ---------------------------------------------------------------------------------------
    def _config(self, producer_box: list) -> dict:
        timeout_ms = max(1, int(self.timeout_s * 1000))
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",  # Java's murmur2 for keyed records (SPEC §2)
            "linger.ms": 5,  # a request spreads over every partition: let each partition batch fill a little
            # Records not acknowledged after this are failed by librdkafka itself, so an outage cannot pile up
            # buffered records for long; the client got its 503 long before.
            "message.timeout.ms": max(timeout_ms, 5_000) + 30_000,
            "socket.connection.setup.timeout.ms": max(timeout_ms, 1_000),
            **RECOVERY,
            "retry.backoff.ms": 100,
            "error_cb": lambda error: self._on_error(producer_box[0] if producer_box else None, error),
            "logger": log,
        }

    def _get_producer(self) -> Producer:
        """The process's producer, created on first use with its polling thread. Never blocks on the network."""
        producer = self._producer
        if producer is not None:
            return producer
        with self._lock:
            if self._producer is None:
                box: list = []
                producer = Producer(self._config(box))
                box.append(producer)
                stop = threading.Event()
                threading.Thread(target=self._serve, args=(producer, stop), name="kafka-delivery-reports",
                                 daemon=True).start()
                self._producer, self._stop = producer, stop
            return self._producer

    def _serve(self, producer: Producer, stop: threading.Event) -> None:
        """Deliver the reports (and errors) of ``producer`` to their requests until it is replaced or closed."""
        while not stop.is_set():
            producer.poll(self.POLL_S)

    def _on_error(self, producer: Producer | None, error: KafkaError) -> None:
        """librdkafka's error callback (in the polling thread). Fatal: replace the producer; else it recovers."""
        if error.fatal() and producer is not None:
            self._discard(producer, error.str())
        elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            log.info("Kafka: %s", error.str())  # transient: librdkafka reconnects by itself
        else:
            log.warning("Kafka: %s", error.str())

    def _discard(self, producer: Producer, why: str) -> None:
        """Replace a producer in a fatal state (the next request makes a new one); its pending requests 503."""
        with self._lock:
            if self._producer is producer:
                self._producer = None
                self._stop.set()
        log.warning("replacing the Kafka producer: %s", why)

    # --- Publisher ------------------------------------------------------------------------------------------
    def publish(self, messages: Sequence[Message]) -> None:
        """Enqueue every message, then wait for all delivery reports until one deadline. Raises
        PublishUnavailable."""
        deadline = time.monotonic() + self.timeout_s
        producer = self._get_producer()
        pending = _Pending(len(messages))
        try:
            for m in messages:
                while True:
                    try:
                        producer.produce(m.topic, m.value, m.key, on_delivery=pending)
                        break
                    except BufferError:  # transient: the local queue is full (Kafka slow or away); wait for room
                        if time.monotonic() >= deadline:
                            raise PublishUnavailable(f"Kafka did not take the records within {self.timeout_s:g} s")
                        time.sleep(0.005)
        except KafkaException as exc:  # a producer in a fatal state, or a record librdkafka refuses outright
            error = exc.args[0]
            if error.fatal():
                self._discard(producer, error.str())
            raise PublishUnavailable(f"Kafka refused the batch: {error.name()}") from None
        if not pending.done.wait(max(0.0, deadline - time.monotonic())):
            raise PublishUnavailable(f"Kafka did not acknowledge within {self.timeout_s:g} s")
        if pending.error is not None:  # transient or fatal broker error for one of the records: 503 either way
            if pending.error.fatal():
                self._discard(producer, pending.error.str())
            raise PublishUnavailable(f"Kafka refused the batch: {pending.error.name()}")

    def ready(self) -> bool:
        """True when a broker answered a metadata request just now (cached for a second). Blocks ≤ ~1 s."""
        checked_at, answer = self._ready_cache
        now = time.monotonic()
        if now - checked_at < 1.0:
            return answer
        try:
            self._get_producer().list_topics(timeout=min(1.0, self.timeout_s))
            answer = True
        except KafkaException:  # transient: no broker answered in time
            answer = False
        self._ready_cache = (time.monotonic(), answer)
        return answer

    def close(self) -> None:
        """Flush buffered records (at most the publish timeout) and stop the polling thread. Idempotent."""
        with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                self._stop.set()
        if producer is None:
            return
        left = producer.flush(self.timeout_s)
        if left:
            log.warning("flush at shutdown left %d records unacknowledged (their clients got 503s)", left)
