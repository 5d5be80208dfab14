"""Anchor D (SPEC §6): the HTTP-layer limit — ``python -m bench.http_limit`` runs the gateway exactly as
``python -m ingest_gateway serve`` does (same app, validation and Avro encoding, same gunicorn workers and
threads) but with a publisher that acknowledges every batch without Kafka. The gateway's rate over this one,
measured under the same load in the same run, is the share of the HTTP work's limit it keeps while publishing.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

import ingest_gateway.publisher as publisher
from eventpipe.settings import Settings
from ingest_gateway.records import Message
from ingest_gateway.server import serve


class AckingPublisher:
    """Acknowledges at once: what the gateway would cost if Kafka cost nothing."""

    def publish(self, messages: Sequence[Message]) -> None:
        pass

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def main() -> int:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper())
    # Every gunicorn worker forks from this process, so they all build their app with this publisher.
    publisher.make_publisher = lambda settings, client_id="eventpipe-gateway": AckingPublisher()
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
