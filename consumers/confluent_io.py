"""The consumers' Kafka boundary over librdkafka (``confluent-kafka``, the default) — the only consumers module
importing it. The boundary itself is ``kafka_io.py``.

``ConfluentSource`` is a group consumer with manual commits (``enable.auto.commit=false``), the eager ``range``
assignor (a rebalance revokes everything, then assigns: the worker flushes and commits in between, as with
kafka-python), and its rebalance callbacks run inside ``poll``. Commits are asynchronous: their answers arrive in
``poll`` or ``close`` (``on_commit``). ``ConfluentDeadLetters`` sends dead letters with
``acks=all`` and idempotence, partitioned like the Java client, and waits for them. Calls block on the network
(bounded by timeouts); a broker that cannot be reached raises ``Unavailable``.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from eventpipe.codec import DEAD_LETTER
from eventpipe.librdkafka import RECOVERY
from eventpipe.settings import Settings

from .errors import Fenced, LostPartitions, Unavailable
from .kafka_io import CommitOutcome, instance_id, reachable
from .processors import Message

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 10.0  # close waits for the answers to the commits sent; librdkafka puts no bound on that

# Commit errors that mean "the group moved on without you": the partitions are someone else's now.
LOST = {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST, KafkaError.FENCED_INSTANCE_ID, KafkaError.STALE_MEMBER_EPOCH}


def _commit_error(error: KafkaError) -> Exception:
    if error.code() in LOST:
        return LostPartitions(error.str())
    return Unavailable(f"commit: {error.str()}")


def _log_error(error: KafkaError) -> None:
    """librdkafka's error callback: it reconnects by itself, so these are reports, not failures."""
    log.warning("Kafka: %s", error.str())


class ConfluentSource:
    """One topic, one consumer group. Rebalance callbacks run inside ``poll``."""

    def __init__(self, settings: Settings, group: str, topic: str,
                 on_assigned: Callable[[list[int]], None], on_revoked: Callable[[list[int]], None]) -> None:
        """Joins on the first poll; raises Unavailable when no broker accepts a connection now."""
        self.topic = topic
        if not reachable(settings.kafka_bootstrap):
            raise Unavailable(f"Kafka at {settings.kafka_bootstrap} does not accept connections")
        static = instance_id(settings)
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "client.id": group,
            **({"group.instance.id": static} if static else {}),
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False,
            "partition.assignment.strategy": "range",
            "session.timeout.ms": settings.consumer_session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.consumer_session_timeout_ms // 5),
            "max.poll.interval.ms": 600_000,
            # librdkafka pre-fetches up to 64 MB (and 100 000 records a partition) by default: 46 MB of the
            # sessions worker's peak RSS at 1 M open sessions (bench recovery phase). 8 MB still holds several
            # batches of EVENTPIPE_BATCH_ROWS records of a few hundred bytes. But a full queue postpones the
            # partition's next fetch by fetch.queue.backoff.ms, 1 s by default: with the 8 MB cap the worker then
            # waited for records half of the time (a drain of 131 072 records with 20 µs of work each: 26 k/s,
            # 38–40 k/s with 1 ms, as without the cap).
            "queued.max.messages.kbytes": 8192, "queued.min.messages": 10_000, "fetch.queue.backoff.ms": 1,
            **RECOVERY, "error_cb": _log_error, "logger": log, "on_commit": self._answered,
        })
        self._on_assigned, self._on_revoked = on_assigned, on_revoked
        self._outcomes: list[CommitOutcome] = []
        self.consumer.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)

    def _tp(self, partition: int, offset: int = -1001, metadata: str | None = None) -> TopicPartition:
        if metadata is None:
            return TopicPartition(self.topic, partition, offset)
        return TopicPartition(self.topic, partition, offset, metadata)

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assign first, so the worker's pause of the new partitions applies to partitions that are assigned.
        consumer.assign(partitions)
        self._on_assigned(sorted(tp.partition for tp in partitions))

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._on_revoked(sorted(tp.partition for tp in partitions))
        consumer.unassign()

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """Records of unpaused partitions, in offset order per partition. Blocks up to ``timeout_s``."""
        try:
            # What is queued now, else wait for the first record and take what came with it. consume() with a
            # timeout waits until it has max_records: the worker then sat idle while librdkafka fetched the rest
            # of a batch, instead of handling what it had (a drain with 20 µs of work a record: +12 %).
            records = self.consumer.consume(num_messages=max_records, timeout=0)
            if not records:
                records = self.consumer.consume(num_messages=1, timeout=timeout_s)
                if records and max_records > 1:
                    records += self.consumer.consume(num_messages=max_records - 1, timeout=0)
        except KafkaException as exc:  # transient (librdkafka reconnects by itself), unless fatal: fenced
            if exc.args[0].fatal():
                raise Fenced(f"poll: {exc}") from None
            raise Unavailable(f"poll: {exc}") from None
        out, topic = [], self.topic
        for r in records:
            error = r.error()
            if error is not None:  # a report about the fetch, not a record: the others of this poll are kept
                if error.fatal():  # librdkafka reports fencing (FENCED_INSTANCE_ID) here: the consumer is dead
                    raise Fenced(f"poll: {error.str()}")
                log.warning("Kafka fetch: %s", error.str())
                continue
            # positional, and the one topic subscribed: half the cost of keyword arguments, once per record
            out.append(Message(topic, r.partition(), r.offset(), r.timestamp()[1], r.value()))
        return out

    def commit(self, offsets: dict[int, tuple[int, str]]) -> None:
        """Send the commit of ``{partition: (next offset, metadata)}``; the answer comes in a later poll."""
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[self._tp(p, o, meta) for p, (o, meta) in offsets.items()],
                                 asynchronous=True)
        except KafkaException as exc:  # refused before it was sent (no assignment, say)
            self._outcomes.append(CommitOutcome({p: o for p, (o, _) in offsets.items()}, _commit_error(exc.args[0])))

    def _answered(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's commit callback (served in poll and close): one outcome per error among the partitions."""
        by_error: dict[int | None, tuple[KafkaError | None, dict[int, int]]] = {}
        for tp in partitions:
            failure = tp.error or error
            code = failure.code() if failure is not None else None
            by_error.setdefault(code, (failure, {}))[1][tp.partition] = tp.offset
        for failure, offsets in by_error.values():
            self._outcomes.append(CommitOutcome(offsets, None if failure is None else _commit_error(failure)))

    def commit_outcomes(self) -> list[CommitOutcome]:
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def committed(self, partition: int) -> int | None:
        """The group's committed offset of a partition, or None. Raises Unavailable."""
        try:
            (tp,) = self.consumer.committed([self._tp(partition)], timeout=10)
        except KafkaException as exc:
            raise Unavailable(f"committed offset of partition {partition}: {exc}") from None
        return tp.offset if tp.offset >= 0 else None

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment())

    def pause(self, partitions: list[int]) -> None:
        if partitions:
            self.consumer.pause([self._tp(p) for p in partitions])

    def resume(self, partitions: list[int]) -> None:
        if partitions:
            self.consumer.resume([self._tp(p) for p in partitions])

    def seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset`` next (None: from the beginning). Raises Unavailable."""
        try:
            self.consumer.seek(self._tp(partition, OFFSET_BEGINNING if offset is None else offset))
        except KafkaException as exc:  # transient: the partition's fetcher is not ready yet
            raise Unavailable(f"seek of partition {partition}: {exc}") from None

    def highwater(self, partition: int, fresh: bool = False) -> int | None:
        """End offset of a partition: cached from fetch responses, or ``fresh`` from the broker (≤ 2 s)."""
        try:
            _, high = self.consumer.get_watermark_offsets(self._tp(partition), timeout=2, cached=not fresh)
        except KafkaException:  # not known yet, or the broker did not answer (transient)
            return None
        return high if high >= 0 else None

    def close(self) -> None:
        """Leave the group once the commits sent are answered; past ``CLOSE_TIMEOUT_S``, leave without it (the
        group then waits out the session timeout before it hands the partitions on)."""
        def leave() -> None:
            try:
                self.consumer.close()
            except (KafkaException, RuntimeError) as exc:  # transient, or closed already: the session times out
                log.warning("closing the Kafka consumer failed", extra={"error": str(exc)})

        closing = threading.Thread(target=leave, name="kafka-close", daemon=True)
        closing.start()
        closing.join(CLOSE_TIMEOUT_S)
        if closing.is_alive():
            log.warning("closing the Kafka consumer did not finish; leaving without it",
                        extra={"timeout_s": CLOSE_TIMEOUT_S})


class ConfluentDeadLetters:
    """Sends dead letters to PREFIX.deadletter with ``acks=all``; the producer is made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: Producer | None = None

    def send_all(self, letters: list[dict]) -> None:
        """Send and wait for every acknowledgement. Blocks; raises Unavailable (then the caller sends them
        all again: the dead-letter sink keeps one row per identical letter)."""
        if not letters:
            return
        if self.producer is None:
            if not reachable(self.settings.kafka_bootstrap):
                raise Unavailable(f"Kafka at {self.settings.kafka_bootstrap} does not accept connections")
            self.producer = Producer({
                "bootstrap.servers": self.settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                "partitioner": "murmur2_random", "linger.ms": 5, "message.timeout.ms": 15_000, **RECOVERY,
                "error_cb": _log_error, "logger": log})
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                errors.append(error)

        try:
            for letter in letters:
                self.producer.produce(self.settings.topic_deadletter, DEAD_LETTER.encode(letter), on_delivery=delivered)
        except (BufferError, KafkaException) as exc:  # transient: queue full or producer trouble; sent again later
            self._reset()
            raise Unavailable(f"dead-letter topic: {exc}") from None
        left = self.producer.flush(15)
        if left or errors:
            if left or any(e.fatal() for e in errors):
                self._reset()
            raise Unavailable(f"dead-letter topic: {left} unacknowledged, "
                              f"{errors[0].str() if errors else 'timed out'}")

    def _reset(self) -> None:
        """Drop a producer that may hold stale records (they would only duplicate letters the sink collapses)."""
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.purge()
            producer.flush(0)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(5)
