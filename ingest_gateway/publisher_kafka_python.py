"""The gateway's publisher over kafka-python (``EVENTPIPE_KAFKA_CLIENT=kafka-python``) — the only gateway module
that imports kafka-python. The boundary is ``publisher.py``.

One long-lived ``KafkaProducer`` per process, made on first use (so after gunicorn forks its workers), with
``acks=all`` and idempotence.  A request's records are all handed to the producer, then awaited together against
one deadline (``publish_timeout_s``): every wait — metadata, buffer, acknowledgement — is bounded by that
deadline, so Kafka being away costs a client at most the timeout and a 503, never a hang.  The producer
reconnects by itself when Kafka comes back; one that fails in a way it cannot recover from is replaced.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

from .publisher import PublishUnavailable
from .records import Message

log = logging.getLogger(__name__)


def _cached_partitioner():
    """kafka-python's default (Java-compatible murmur2) partitioner with the hash of each key memoised.

    Its murmur2 is pure Python (~40 µs a key, a third of the producer's CPU per record); the keys repeat — every
    event of a session has the same one — so a bounded cache removes most of that cost without changing any
    partition choice (direct producers using the Java client land records of one key in the same partition).
    """
    import functools

    from kafka.partitioner.default import DefaultPartitioner, murmur2

    hash_of = functools.lru_cache(maxsize=65_536)(murmur2)

    class CachedMurmur2Partitioner(DefaultPartitioner):
        def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
            if serialized_key is None:
                return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                raise ValueError(f"Topic {topic} not found in ClusterMetadata")
            ordered = sorted(partitions)
            return ordered[(hash_of(bytes(serialized_key)) & 0x7FFFFFFF) % len(ordered)]

    return CachedMurmur2Partitioner()


class KafkaPythonPublisher:
    """``Publisher`` over kafka-python. Thread-safe: the gthread workers of one process share it."""

    # After a failed attempt to create the producer, requests fail fast for this long instead of each paying
    # the full timeout again.
    RETRY_CREATE_AFTER_S = 1.0

    def __init__(self, bootstrap: str, timeout_s: float, client_id: str = "eventpipe-gateway",
                 max_request_bytes: int = 1_048_576) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.client_id = client_id
        self.max_request_bytes = max_request_bytes
        self._producer = None
        self._lock = threading.Lock()
        self._failed_at = float("-inf")
        self._ready_cache: tuple[float, bool] = (float("-inf"), False)

    # --- the producer ---------------------------------------------------------------------------------------
    def _config(self) -> dict:
        timeout_ms = max(1, int(self.timeout_s * 1000))
        return dict(
            bootstrap_servers=self.bootstrap.split(","),
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,  # a request spreads over every partition: let each partition batch fill a little
            partitioner=_cached_partitioner(),
            batch_size=256 * 1024,
            max_request_size=self.max_request_bytes,
            # Bound every blocking call of the producer by the publish timeout (SPEC §4.2): metadata waits in
            # send(), the initial bootstrap, and each request to the broker.
            max_block_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=max(timeout_ms, 5_000),
            # Records not acknowledged after this are failed by the producer itself, so an outage cannot pile
            # up buffered records for long; the client got its 503 long before.
            delivery_timeout_ms=max(timeout_ms, 5_000) + 30_000,
            # Come back quickly when Kafka returns (the default backs off up to 30 s between attempts).
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=1_000,
            retry_backoff_ms=100,
        )

    def _get_producer(self, deadline: float):
        """The process's producer, created on first use. Raises PublishUnavailable when Kafka cannot be reached."""
        producer = self._producer
        if producer is not None:
            return producer
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._lock.acquire(timeout=remaining):
            raise PublishUnavailable("Kafka producer is still connecting")
        try:
            if self._producer is not None:
                return self._producer
            if time.monotonic() - self._failed_at < self.RETRY_CREATE_AFTER_S:
                raise PublishUnavailable(f"Kafka at {self.bootstrap} could not be reached a moment ago")
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                self._producer = KafkaProducer(**self._config())
            except (KafkaError, OSError) as exc:  # transient: Kafka down or unreachable; a later request retries
                self._failed_at = time.monotonic()
                log.warning("cannot connect to Kafka at %s: %s", self.bootstrap, exc)
                raise PublishUnavailable(f"Kafka at {self.bootstrap} cannot be reached") from None
            log.info("Kafka producer connected to %s", self.bootstrap)
            return self._producer
        finally:
            self._lock.release()

    def _discard(self, producer, why: str) -> None:
        """Replace a producer that failed in a way it does not recover from (the next request makes a new one)."""
        with self._lock:
            if self._producer is producer:
                self._producer = None
        log.warning("replacing the Kafka producer: %s", why)
        threading.Thread(target=producer.close, kwargs={"timeout": 0}, daemon=True).start()

    # --- Publisher ------------------------------------------------------------------------------------------
    def publish(self, messages: Sequence[Message]) -> None:
        """Send every message, then wait for all acknowledgements until one deadline. Raises PublishUnavailable."""
        from kafka.errors import IllegalStateError, KafkaError, KafkaTimeoutError

        deadline = time.monotonic() + self.timeout_s
        producer = self._get_producer(deadline)
        futures = []
        try:
            # Metadata first, for each topic, within what is left of the deadline: send() would otherwise allow
            # every topic a whole max_block_ms of its own (kafka-python has no public call taking a timeout).
            wait_on_metadata = getattr(producer, "_wait_on_metadata", None)
            if wait_on_metadata is not None:
                for topic in {m.topic for m in messages}:
                    remaining_ms = int((deadline - time.monotonic()) * 1000)
                    if remaining_ms <= 0:
                        raise KafkaTimeoutError("publish timeout")
                    wait_on_metadata(topic, remaining_ms)
            for m in messages:
                futures.append(producer.send(m.topic, value=m.value, key=m.key))
            for future in futures:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError("publish timeout")
                future.get(timeout=remaining)
        except KafkaTimeoutError:  # transient: not acknowledged in time
            raise PublishUnavailable(f"Kafka did not acknowledge within {self.timeout_s:g} s") from None
        except IllegalStateError as exc:  # the producer is closed or fenced: a bug or a fatal state — replace it
            self._discard(producer, str(exc))
            raise PublishUnavailable("Kafka producer is being replaced") from None
        except KafkaError as exc:  # transient or producer-fatal broker error: report 503; replace if not retriable
            if not getattr(exc, "retriable", False):
                self._discard(producer, f"{type(exc).__name__}: {exc}")
            raise PublishUnavailable(f"Kafka refused the batch: {type(exc).__name__}") from None
        except ValueError as exc:  # transient: kafka-python's view of the topic changed under send() (metadata race)
            log.warning("send failed: %s", exc)
            raise PublishUnavailable("Kafka topic metadata is not available") from None

    def ready(self) -> bool:
        """True when a broker answered a metadata request just now (cached for a second). Blocks ≤ ~1 s."""
        checked_at, answer = self._ready_cache
        now = time.monotonic()
        if now - checked_at < 1.0:
            return answer
        answer = self._probe(min(1.0, self.timeout_s))
        self._ready_cache = (time.monotonic(), answer)
        return answer

    def _probe(self, timeout_s: float) -> bool:
        from kafka.errors import KafkaError

        try:
            producer = self._get_producer(time.monotonic() + timeout_s)
        except PublishUnavailable:  # transient: Kafka unreachable, so not ready
            return False
        try:
            # A fresh metadata round trip proves a broker answers now (cached metadata would not).
            metadata = producer._metadata  # kafka-python keeps the cluster view here; no public refresh call
            future = metadata.request_update()
            producer._sender.wakeup()
            done = threading.Event()
            future.add_both(lambda *_: done.set())
            return done.wait(timeout_s) and future.succeeded()
        except (KafkaError, AttributeError) as exc:  # transient, or a kafka-python without these internals
            log.debug("readiness probe failed: %s", exc)
            return bool(producer.bootstrap_connected())

    def close(self) -> None:
        """Flush buffered records (at most the publish timeout) and close. Safe to call more than once."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        from kafka.errors import KafkaError

        try:
            producer.flush(timeout=self.timeout_s)
        except KafkaError as exc:  # transient: Kafka away at shutdown; the clients got 503s for those records
            log.warning("flush at shutdown did not complete: %s", exc)
        producer.close(timeout=self.timeout_s)
