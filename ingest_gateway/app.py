"""``create_app(settings, keystore, publisher)`` — the Falcon application with its collaborators injected.

Tests build it with a fake publisher and an in-memory key store; ``server.py`` builds it in each gunicorn worker
with the configured client's Kafka publisher (``publisher.make_publisher``) and the key file.
"""

from __future__ import annotations

from functools import partial

import falcon

from eventpipe.contract import load_event_types
from eventpipe.settings import Settings

from .bodies import drain_body
from .errors import V3, ZIDIUM, GatewayError, GatewayErrorHandler, handle_unexpected
from .keystore import KeyStore
from .metrics import Metrics
from .openapi import document
from .publisher import Publisher
from .resources.joins import ZidiumResource
from .resources.ops import HealthResource, MetricsResource, OpenAPIResource, ReadyResource
from .resources.v3 import EventsResource
from .zidium.directory import ComponentDirectory


class RequestMetrics:
    """Middleware: requests in flight, and one count per answered request by route template and status."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Zidium clients are known to vary the case of the path: route /API/joinevents like /api/joinevents.
        if req.path[:5].lower() == "/api/" and not req.path.startswith("/api/"):
            req.path = "/api/" + req.path[5:]
        req.context.api = ZIDIUM if req.path.startswith("/api/") else V3
        self.metrics.in_flight.inc()
        req.context.in_flight = True

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        if getattr(req.context, "in_flight", False):
            self.metrics.in_flight.dec()
            req.context.in_flight = False
        route = req.uri_template or "unmatched"
        self.metrics.requests.labels(route, req.method, str(resp.status_code)).inc()


def create_app(settings: Settings, keystore: KeyStore, publisher: Publisher, metrics: Metrics | None = None,
               event_types: frozenset[str] | None = None, directory: ComponentDirectory | None = None) -> falcon.App:
    """The WSGI app. Reads the event-types file unless ``event_types`` is given (raises ValueError/OSError).

    ``directory`` answers GetComponentById/UpdateComponent for components other processes added (the server
    passes the ClickHouse one); without it a process knows the components it answered for itself."""
    metrics = metrics or Metrics()
    event_types = event_types if event_types is not None else load_event_types(settings.event_types_file)
    app = falcon.App(middleware=[RequestMetrics(metrics)])
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/v3/events", EventsResource(settings, keystore, publisher, metrics, event_types))
    app.add_route("/api/{action}", ZidiumResource(settings, keystore, publisher, metrics, directory))
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadyResource(publisher))
    app.add_route("/metrics", MetricsResource(metrics))
    app.add_route("/openapi.json", OpenAPIResource(document(settings, event_types)))
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(GatewayError, GatewayErrorHandler(partial(drain_body, bound=settings.http_discard_bytes)))
    return app
