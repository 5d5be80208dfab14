"""Operational endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json`` (SPEC §1.3)."""

from __future__ import annotations

from typing import Any

import falcon

from ..jsontext import dumps_compact
from ..metrics import Metrics
from ..publisher import Publisher


class HealthResource:
    """The process is alive and serving."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = '{"status":"ok"}'


class ReadyResource:
    """Kafka answers: 200, else 503 (a load balancer should send no traffic here then)."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        if self.publisher.ready():
            resp.text = '{"status":"ready","kafka":"reachable"}'
        else:
            resp.status = falcon.HTTP_503
            resp.text = '{"status":"not ready","kafka":"unreachable"}'


class MetricsResource:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = self.metrics.content_type
        resp.data = self.metrics.exposition()


class OpenAPIResource:
    def __init__(self, document: dict[str, Any]) -> None:
        self.text = dumps_compact(document)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = self.text
