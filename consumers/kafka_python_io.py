"""The consumers' Kafka boundary over kafka-python (``EVENTPIPE_KAFKA_CLIENT=kafka-python``) — the only consumers
module importing kafka-python. The boundary itself is ``kafka_io.py``.

``KafkaPythonSource`` is a group consumer with manual commits (``enable_auto_commit=False``): the worker commits only
after a batch is in ClickHouse. ``KafkaPythonDeadLetters`` sends dead letters with ``acks=all`` and waits for them.
Calls block on the network (bounded by timeouts); a broker that cannot be reached raises ``Unavailable``.
"""

from __future__ import annotations

import logging
from typing import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from eventpipe.codec import DEAD_LETTER
from eventpipe.settings import Settings

from .errors import LostPartitions, Unavailable
from .kafka_io import CommitOutcome, instance_id, reachable
from .processors import Message

log = logging.getLogger(__name__)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, on_assigned: Callable[[list[int]], None], on_revoked: Callable[[list[int]], None]) -> None:
        self.on_assigned, self.on_revoked = on_assigned, on_revoked

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.on_revoked(sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.on_assigned(sorted(tp.partition for tp in assigned))


class KafkaPythonSource:
    """One topic, one consumer group. Rebalance callbacks run inside ``poll``."""

    def __init__(self, settings: Settings, group: str, topic: str,
                 on_assigned: Callable[[list[int]], None], on_revoked: Callable[[list[int]], None]) -> None:
        """Blocks until the broker answers; raises Unavailable when it does not."""
        self.topic = topic
        if not reachable(settings.kafka_bootstrap):
            # checked first because a KafkaConsumer that fails to bootstrap leaves a thread behind
            raise Unavailable(f"Kafka at {settings.kafka_bootstrap} does not accept connections")
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap, group_id=group, client_id=f"{group}",
                group_instance_id=instance_id(settings),
                enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=settings.consumer_session_timeout_ms,
                heartbeat_interval_ms=max(500, settings.consumer_session_timeout_ms // 5),
                max_poll_interval_ms=600_000, max_poll_records=max(1, settings.batch_rows),
                request_timeout_ms=max(30_000, settings.consumer_session_timeout_ms + 5_000),
                bootstrap_timeout_ms=10_000)
        except KafkaError as exc:  # transient: broker not there yet
            raise Unavailable(f"Kafka at {settings.kafka_bootstrap}: {exc}") from None
        self.consumer.subscribe([topic], listener=_Listener(on_assigned, on_revoked))
        self._outcomes: list[CommitOutcome] = []

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """Records of unpaused partitions, in offset order per partition. Blocks up to ``timeout_s``."""
        try:
            batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:  # transient: kafka-python reconnects by itself on the next poll
            raise Unavailable(f"poll: {exc}") from None
        return [Message(r.topic, r.partition, r.offset, r.timestamp, r.value)  # positional: half the cost
                for records in batches.values() for r in records]

    def commit(self, offsets: dict[int, tuple[int, str]]) -> None:
        """Commit ``{partition: (next offset, metadata)}`` and wait for the answer (up to 10 s)."""
        if not offsets:
            return
        sent = {p: o for p, (o, _) in offsets.items()}
        try:
            self.consumer.commit({self._tp(p): OffsetAndMetadata(o, meta, -1) for p, (o, meta) in offsets.items()},
                                 timeout_ms=10_000)
        except CommitFailedError as exc:
            self._outcomes.append(CommitOutcome(sent, LostPartitions(str(exc))))
        except KafkaError as exc:
            self._outcomes.append(CommitOutcome(sent, Unavailable(f"commit: {exc}")))
        else:
            self._outcomes.append(CommitOutcome(sent))

    def commit_outcomes(self) -> list[CommitOutcome]:
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def committed(self, partition: int) -> int | None:
        """The group's committed offset of a partition, or None. Raises Unavailable."""
        try:
            return self.consumer.committed(self._tp(partition), timeout_ms=10_000)
        except KafkaError as exc:
            raise Unavailable(f"committed offset of partition {partition}: {exc}") from None

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment())

    def pause(self, partitions: list[int]) -> None:
        self.consumer.pause(*(self._tp(p) for p in partitions))

    def resume(self, partitions: list[int]) -> None:
        self.consumer.resume(*(self._tp(p) for p in partitions))

    def seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset`` next (None: from the beginning)."""
        if offset is None:
            self.consumer.seek_to_beginning(self._tp(partition))
        else:
            self.consumer.seek(self._tp(partition), offset)

    def highwater(self, partition: int, fresh: bool = False) -> int | None:
        """End offset of a partition: cached from fetch responses, or ``fresh`` from the broker (≤ 2 s)."""
        if not fresh:
            return self.consumer.highwater(self._tp(partition))
        try:
            return self.consumer.end_offsets([self._tp(partition)], timeout_ms=2_000).get(self._tp(partition))
        except KafkaError:  # transient: the broker did not answer; the lag gauge keeps its last value
            return None

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except KafkaError as exc:  # transient: leaving the group politely failed; the session times out instead
            log.warning("closing the Kafka consumer failed", extra={"error": str(exc)})


class KafkaPythonDeadLetters:
    """Sends dead letters to PREFIX.deadletter with ``acks=all``; the producer is made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: KafkaProducer | None = None

    def send_all(self, letters: list[dict]) -> None:
        """Send and wait for every acknowledgement. Blocks; raises Unavailable (then the caller sends them
        all again: the dead-letter sink keeps one row per identical letter)."""
        if not letters:
            return
        try:
            if self.producer is None:
                if not reachable(self.settings.kafka_bootstrap):
                    raise Unavailable(f"Kafka at {self.settings.kafka_bootstrap} does not accept connections")
                self.producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                              linger_ms=5, max_block_ms=10_000, request_timeout_ms=10_000,
                                              bootstrap_timeout_ms=10_000)
            futures = [self.producer.send(self.settings.topic_deadletter, DEAD_LETTER.encode(letter))
                       for letter in letters]
            self.producer.flush(timeout=15)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:  # transient: broker down or slow
            raise Unavailable(f"dead-letter topic: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except KafkaError:  # transient: nothing left to send (send_all waited for every ack)
                pass
