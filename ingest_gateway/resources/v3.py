"""``POST /v3/events`` — the v3 event API (SPEC §1.1). All-or-nothing: one invalid event refuses the batch."""

from __future__ import annotations

import time
from typing import Any

import falcon

from eventpipe.codec import EVENT
from eventpipe.settings import Settings

from .. import jsontext
from ..bodies import check_content_length, read_body, v3_container
from ..errors import V3_SUCCESS, BadRequest, InvalidEvents, TooLarge, Unauthorized, Unavailable
from ..keystore import KeyStore
from ..metrics import Metrics
from ..publisher import Publisher, PublishUnavailable
from ..records import Message, event_ids, event_key, event_record
from ..validation import FieldError, Limits, iter_details, validate_events

MAX_DETAILS = 1000
# Kafka's default limit on one record is 1 MiB; an event that encodes larger could never be acknowledged.
MAX_RECORD_BYTES = 1_000_000


def credentials(req: falcon.Request, fields: dict[str, str] | None, doc: Any) -> str | None:
    """The presented key: header ``X-Api-Key``, ``Authorization: Bearer``, form field or JSON member ``apikey``."""
    key = req.get_header("X-Api-Key")
    if key:
        return key.strip()
    auth = req.get_header("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if fields is not None:
        return fields.get("apikey") or None
    if isinstance(doc, dict) and isinstance(doc.get("apikey"), str):
        return doc["apikey"]
    return None


def batch_items(fields: dict[str, str] | None, doc: Any) -> list[Any]:
    """The JSON array of events from a form ``data`` field or a JSON body. Raises BadRequest (code 1)."""
    if fields is not None:
        if "data" not in fields:
            raise BadRequest("no data: send the events as the form field data=[...]")
        data: Any = fields["data"]
    elif isinstance(doc, jsontext.JSONError):
        raise BadRequest(f"the body cannot be read as JSON: {doc.reason}")
    elif isinstance(doc, dict):
        if "data" not in doc:
            raise BadRequest('no data: send a JSON array of events, or {"data": [...]}')
        data = doc["data"]
    else:
        data = doc
        if isinstance(data, str):
            raise BadRequest("data must be a JSON array of events, not a string")
    if isinstance(data, str):  # the form field, or {"data": "[...]"}: JSON text inside
        try:
            data = jsontext.loads(data)
        except jsontext.JSONError as exc:  # invalid input
            raise BadRequest(f"data cannot be read as JSON: {exc.reason}") from None
    if not isinstance(data, list):
        raise BadRequest("data must be a JSON array of events (even for a single event)")
    if not data:
        raise BadRequest("data is an empty array; send at least one event")
    return data


class EventsResource:
    """Authenticate, validate every event, publish the batch, answer once Kafka acknowledged all of it."""

    def __init__(self, settings: Settings, keystore: KeyStore, publisher: Publisher, metrics: Metrics,
                 event_types: frozenset[str]) -> None:
        self.settings = settings
        self.keystore = keystore
        self.publisher = publisher
        self.metrics = metrics
        self.event_types = event_types
        self.limits = Limits.from_settings(settings)
        self.max_body_bytes = settings.max_body_bytes
        self.topic = settings.topic_events

    @falcon.before(check_content_length)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        received_at_ms = int(time.time() * 1000)
        body = read_body(req, self.max_body_bytes)
        fields, doc = v3_container(req, body, self.max_body_bytes)
        key = credentials(req, fields, doc)
        account = self.keystore.account_for(key)
        if account is None:
            raise Unauthorized("missing API key: send X-Api-Key, Authorization: Bearer or the apikey field"
                               if not key else "unknown API key")
        items = batch_items(fields, doc)
        if len(items) > self.limits.max_events:
            raise TooLarge(f"the batch has {len(items)} events; the limit is {self.limits.max_events}")

        events, errors = validate_events(items, self.event_types, self.limits, received_at_ms // 1000)
        messages: list[Message] = []
        if not errors:
            for index, (event, event_id) in enumerate(zip(events, event_ids(account, events))):
                value = EVENT.encode(event_record(account, event_id, event, received_at_ms))
                if len(value) > MAX_RECORD_BYTES:
                    errors.append(FieldError(index, "", "max_record_bytes",
                                             f"the event is {len(value)} bytes once encoded; at most "
                                             f"{MAX_RECORD_BYTES} fit in one Kafka record"))
                messages.append(Message(self.topic, event_key(account, event), value))
        if errors:
            self._count_rejected(errors, len(items))
            bad = len({e.index for e in errors})
            shown = "" if len(errors) <= MAX_DETAILS else f" (the first {MAX_DETAILS} of {len(errors)} errors shown)"
            raise InvalidEvents(f"{bad} of {len(items)} events are invalid; nothing was accepted{shown}",
                                iter_details(errors, MAX_DETAILS))

        started = time.perf_counter()
        try:
            self.publisher.publish(messages)
        except PublishUnavailable as exc:  # transient: the client retries after Retry-After
            self.metrics.publish_latency.labels("v3", "unavailable").observe(time.perf_counter() - started)
            self.metrics.rejected.labels("v3", "kafka_unavailable").inc(len(messages))
            raise Unavailable(f"{exc}; whether any event was stored is unknown: retrying the same request is safe",
                              self.settings.publish_timeout_s) from None
        self.metrics.publish_latency.labels("v3", "ok").observe(time.perf_counter() - started)
        self.metrics.accepted.labels("v3").inc(len(messages))
        resp.status = falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        resp.text = V3_SUCCESS

    def _count_rejected(self, errors: list[FieldError], total: int) -> None:
        first_rule: dict[int, str] = {}
        for error in errors:
            first_rule.setdefault(error.index, f"{error.field.split('[')[0] or 'event'}:{error.rule}")
        for rule in first_rule.values():
            self.metrics.rejected.labels("v3", rule).inc()
        if total > len(first_rule):
            self.metrics.rejected.labels("v3", "batch_refused").inc(total - len(first_rule))
