"""``POST /api/{action}`` — the Zidium-style API (SPEC §1.2): JoinEvents here, the other actions in
``zidium_actions.py``; any other action answers Code 100.

JoinEvents: records with incorrect data are ignored while the others are processed (as the seed says), but nothing
vanishes: each ignored record goes to the dead-letter topic with its reason, in the same acknowledged batch.
"""

from __future__ import annotations

import time
from typing import Any

import falcon

from eventpipe.codec import DEAD_LETTER, JOIN_RECORD
from eventpipe.settings import Settings

from .. import jsontext
from ..bodies import check_content_length, read_body
from ..errors import ZIDIUM_SUCCESS, BadRequest, MissingField, TooLarge, Unauthorized, Unavailable, \
    UnknownAction
from ..keystore import KeyStore
from ..metrics import Metrics
from ..publisher import Publisher, PublishUnavailable
from ..records import Message, dead_letter, derive_id, join_key, join_record, raw_canonical, with_occurrences
from ..validation import JoinFields, Rejection, casefold_keys, validate_join_record
from ..zidium.directory import ComponentDirectory, RecentComponents
from ..zidium.wire import success
from .zidium_actions import ZidiumActions, server_time

NO_KEY_ACTIONS = {"getservertime"}  # Zidium's server answers these without a token (and to GET as well)


def parse_request(body: bytes) -> tuple[str, Any]:
    """(SecretKey, Data) of a Zidium request body. Raises BadRequest (101) or MissingField (1140)."""
    if not body.strip():
        raise BadRequest("the body is empty")
    try:
        doc = jsontext.loads(body)
    except jsontext.JSONError as exc:  # invalid input
        raise BadRequest(f"the body cannot be read as JSON: {exc.reason}") from None
    if not isinstance(doc, dict):
        raise BadRequest('the body must be a JSON object {"Token": {...}, "Data": [...]}')
    doc = casefold_keys(doc)
    token = doc.get("token")
    if token is None:
        raise MissingField("Token is missing")
    if not isinstance(token, dict):
        raise MissingField('Token must be an object {"SecretKey": "..."}')
    secret = casefold_keys(token).get("secretkey")
    if secret is None or secret == "":
        raise MissingField("Token.SecretKey is missing")
    data = doc.get("data")
    return (secret if isinstance(secret, str) else ""), data


class ZidiumResource:
    """Authenticate by ``Token.SecretKey`` and run the action named by the last path segment."""

    def __init__(self, settings: Settings, keystore: KeyStore, publisher: Publisher, metrics: Metrics,
                 directory: ComponentDirectory | None = None) -> None:
        self.settings = settings
        self.keystore = keystore
        self.publisher = publisher
        self.metrics = metrics
        self.max_body_bytes = settings.max_body_bytes
        self.max_records = settings.max_events
        # Without a directory (unit tests, the bench) a process knows the components it answered for itself.
        self.actions = ZidiumActions(settings, self.publish, directory or RecentComponents())
        self.handlers = {"joinevents": self.join_events, **self.actions.handlers}

    def on_get(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        if action.lower() not in NO_KEY_ACTIONS:
            raise falcon.HTTPMethodNotAllowed(["POST"])  # Zidium actions are POSTed
        self.answer(resp, success(server_time(int(time.time() * 1000))))

    @falcon.before(check_content_length)
    def on_post(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        name = action.lower()
        received_at_ms = int(time.time() * 1000)
        if name in NO_KEY_ACTIONS:  # before reading the body: Zidium's Java client sends GetServerTime without one
            self.answer(resp, success(server_time(received_at_ms)))
            return
        handler = self.handlers.get(name)
        if handler is None:
            raise UnknownAction(f"unknown action {action[:64]!r}; this service implements "
                                "JoinEvents, SendEvent, GetRootComponent, GetOrAddComponent, GetComponentById, "
                                "UpdateComponent, GetEcho and GetServerTime")
        secret, data = parse_request(read_body(req, self.max_body_bytes))
        account = self.keystore.account_for(secret)
        if account is None:
            raise Unauthorized("invalid secret key")
        result = handler(account, data, received_at_ms)
        if name == "sendevent":
            self.metrics.accepted.labels("joins").inc()
        self.answer(resp, ZIDIUM_SUCCESS if name == "joinevents" else success(result))

    @staticmethod
    def answer(resp: falcon.Response, body: str) -> None:
        resp.status = falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        resp.text = body

    def publish(self, messages: list[Message]) -> None:
        """Publish and wait for Kafka's acknowledgement. Blocks; raises Unavailable (503, Code 1190)."""
        started = time.perf_counter()
        try:
            if messages:
                self.publisher.publish(messages)
        except PublishUnavailable as exc:  # transient: the client retries after Retry-After
            self.metrics.publish_latency.labels("joins", "unavailable").observe(time.perf_counter() - started)
            raise Unavailable(f"{exc}; retry the same request", self.settings.publish_timeout_s) from None
        self.metrics.publish_latency.labels("joins", "ok").observe(time.perf_counter() - started)

    def join_events(self, account: str, data: Any, received_at_ms: int) -> None:
        """JoinEvents: the valid records and the dead letters of the others, in one acknowledged batch."""
        if data is None:
            raise MissingField("Data is missing")
        if not isinstance(data, list):
            raise MissingField("Data must be an array of records")
        if len(data) > self.max_records:
            raise TooLarge(f"Data has {len(data)} records; the limit is {self.max_records}")

        messages, accepted, ignored = self.build_messages(account, data, received_at_ms)
        self.publish(messages)
        self.metrics.accepted.labels("joins").inc(accepted)
        for rule in ignored:
            self.metrics.rejected.labels("joins", rule).inc()

    def build_messages(self, account: str, data: list[Any],
                       received_at_ms: int) -> tuple[list[Message], int, list[str]]:
        """Kafka messages for one request: join records, and dead letters for ignored records.

        Returns (messages, number of join records, rules of the ignored records).
        """
        results = [validate_join_record(raw, received_at_ms, self.settings.max_future_s) for raw in data]
        valid = [(raw, r) for raw, r in zip(data, results) if isinstance(r, JoinFields)]
        messages: list[Message] = []
        for (raw, fields), (canonical, n) in zip(valid, with_occurrences(raw_canonical(raw) for raw, _ in valid)):
            record_id = derive_id("join", account, canonical, n)
            value = JOIN_RECORD.encode(join_record(account, record_id, fields, received_at_ms))
            messages.append(Message(self.settings.topic_joins, join_key(account, fields), value))
        ignored = []
        for index, (raw, result) in enumerate(zip(data, results)):
            if isinstance(result, Rejection):
                reason = f"JoinEvents record {index}: {result.reason}"
                value = DEAD_LETTER.encode(dead_letter(account, reason, raw, received_at_ms))
                messages.append(Message(self.settings.topic_deadletter, account.encode("utf-8"), value))
                ignored.append(result.rule)
        return messages, len(valid), ignored
