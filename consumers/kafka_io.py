"""The consumers' Kafka boundary: what the worker loop needs from Kafka, and which client provides it.

Two implementations, one module each, chosen once here from ``EVENTPIPE_KAFKA_CLIENT`` (SPEC §2): librdkafka
(``confluent_io.py``, the default) and kafka-python (``kafka_python_io.py``). Both hold the same contract —
manual commits after the ClickHouse write, rebalance callbacks inside ``poll``, pause/resume/seek, dead letters
with ``acks=all`` — and one contract suite (``tests/integration/consumers/test_kafka_contract.py``) runs against
each. Nothing else in the consumers knows which one runs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Callable, Protocol

from eventpipe.settings import Settings, SettingsError

from .processors import Message


@dataclass(frozen=True)
class CommitOutcome:
    """The broker's answer to (part of) one ``Source.commit``."""

    offsets: dict[int, int]                     # partition → the next offset that was to be committed
    error: Exception | None = field(default=None)  # None: committed; LostPartitions: the partitions moved on;
    #                                                Unavailable: transient, send it again


class Source(Protocol):
    """One topic, one consumer group, manual commits. Rebalance callbacks run inside ``poll``. Every call that
    reaches the broker raises ``Unavailable`` when it cannot — except ``commit``, whose answer comes back as a
    ``CommitOutcome``."""

    def poll(self, timeout_s: float, max_records: int) -> list[Message]: ...
    def commit(self, offsets: dict[int, tuple[int, str]]) -> None:
        """Send ``{partition: (next offset, metadata)}`` to be committed. Never raises for the broker's answer
        and never waits for it without a bound: the answer is in ``commit_outcomes``, at once (kafka-python waits
        for it, up to a timeout) or after a later ``poll`` or ``close`` (librdkafka: its synchronous commit has no
        timeout, and one sent while the broker shuts down waited for the broker's return — a whole outage)."""
    def commit_outcomes(self) -> list[CommitOutcome]:
        """The answers that arrived since the last call, oldest first."""
    def committed(self, partition: int) -> int | None: ...
    def assignment(self) -> list[int]: ...
    def pause(self, partitions: list[int]) -> None: ...
    def resume(self, partitions: list[int]) -> None: ...
    def seek(self, partition: int, offset: int | None) -> None: ...
    def highwater(self, partition: int, fresh: bool = False) -> int | None:
        """End offset of a partition: the last one fetch responses brought (no network call), or, ``fresh``,
        asked from the broker now (bounded; None when it does not answer)."""
    def close(self) -> None: ...


class DeadLetters(Protocol):
    def send_all(self, letters: list[dict]) -> None:
        """Send and wait for every acknowledgement. Blocks; raises Unavailable."""

    def close(self) -> None: ...


SourceFactory = Callable[[Settings, str, str, Callable[[list[int]], None], Callable[[list[int]], None]], Source]


def reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when some bootstrap server accepts a TCP connection. Blocks up to ``timeout_s`` per server."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):  # transient (refused, unreachable) or a malformed entry: try the next one
            continue
    return False


def instance_id(settings: Settings) -> str | None:
    """The ``group.instance.id`` to join with (None: dynamic membership). ``auto`` is resolved by
    ``consumers.__main__`` once the /metrics port is bound; left unresolved (a Worker built in-process) it means
    dynamic."""
    value = settings.consumer_instance_id
    return None if value in ("", "auto", "off") else value


def source_factory(settings: Settings) -> SourceFactory:
    """The configured client's ``Source`` class (called as ``factory(settings, group, topic, on_assigned,
    on_revoked)``, which joins the group). Raises SettingsError when that client cannot be imported."""
    if settings.kafka_client == "kafka-python":
        from .kafka_python_io import KafkaPythonSource

        return KafkaPythonSource
    return _confluent().ConfluentSource


def dead_letters(settings: Settings) -> DeadLetters:
    """The configured client's dead-letter publisher (connects on first use). Raises SettingsError."""
    if settings.kafka_client == "kafka-python":
        from .kafka_python_io import KafkaPythonDeadLetters

        return KafkaPythonDeadLetters(settings)
    return _confluent().ConfluentDeadLetters(settings)


def _confluent():
    try:
        from . import confluent_io
    except ImportError as exc:  # a broken or missing install: say which variable chooses the client
        raise SettingsError(f"EVENTPIPE_KAFKA_CLIENT=confluent-kafka but the confluent-kafka package cannot be "
                            f"imported ({exc}); reinstall it (make clean && make run) or set "
                            f"EVENTPIPE_KAFKA_CLIENT=kafka-python") from None
    return confluent_io
