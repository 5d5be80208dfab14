"""The fake publisher of the gateway's unit tests (fakes live in tests/unit only)."""

from __future__ import annotations

from typing import Sequence

from ingest_gateway.publisher import PublishUnavailable
from ingest_gateway.records import Message


class FakePublisher:
    """Records what would be published; ``fail=True`` behaves like Kafka not acknowledging in time."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []
        self.fail = False
        self.is_ready = True

    def publish(self, messages: Sequence[Message]) -> None:
        if self.fail:
            raise PublishUnavailable("Kafka did not acknowledge within 5 s")
        self.batches.append(list(messages))

    def ready(self) -> bool:
        return self.is_ready

    def close(self) -> None:
        pass

    @property
    def messages(self) -> list[Message]:
        return [m for batch in self.batches for m in batch]
