"""The gateway's Kafka boundary: what the resources need from Kafka, and which client provides it.

Two implementations, one module each, chosen once here from ``EVENTPIPE_KAFKA_CLIENT`` (SPEC §2): librdkafka
(``publisher_confluent.py``, the default) and kafka-python (``publisher_kafka_python.py``). Both keep the same
contract — ``acks=all`` with idempotence, Java's murmur2 partitioning, one deadline per request — and one contract
suite (``tests/integration/gateway``) runs against each. Nothing else in the gateway knows which one runs.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from eventpipe.settings import Settings, SettingsError

from .records import Message


class PublishUnavailable(Exception):
    """Transient: Kafka did not acknowledge every record within the timeout. Whether some were stored is
    unknown; retrying the same request is safe (ids are deterministic)."""


class Publisher(Protocol):
    def publish(self, messages: Sequence[Message]) -> None:
        """Send all ``messages`` and block until Kafka acknowledged each. Raises PublishUnavailable."""

    def ready(self) -> bool:
        """True when Kafka answers now. Blocks at most about a second."""

    def close(self) -> None:
        """Flush what is buffered (bounded by the publish timeout) and release the connections."""


def make_publisher(settings: Settings, client_id: str = "eventpipe-gateway") -> Publisher:
    """The configured client's publisher; no connection yet (made on first use, after gunicorn forks).
    Raises SettingsError
    when the configured client cannot be imported."""
    if settings.kafka_client == "kafka-python":
        from .publisher_kafka_python import KafkaPythonPublisher

        return KafkaPythonPublisher(settings.kafka_bootstrap, settings.publish_timeout_s, client_id)
    try:
        from .publisher_confluent import ConfluentPublisher
    except ImportError as exc:  # a broken or missing install: say which variable chooses the client
        raise SettingsError(f"EVENTPIPE_KAFKA_CLIENT=confluent-kafka but the confluent-kafka package cannot be "
                            f"imported ({exc}); reinstall it (make clean && make run) or set "
                            f"EVENTPIPE_KAFKA_CLIENT=kafka-python") from None
    return ConfluentPublisher(settings.kafka_bootstrap, settings.publish_timeout_s, client_id)
