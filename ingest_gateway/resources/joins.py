"""``POST /api/{action}`` — the Zidium-style JoinEvents API (SPEC §1.2).

Records with incorrect data are ignored while the others are processed (as the seed says), but nothing vanishes:
each ignored record goes to the dead-letter topic with its reason, in the same acknowledged batch.
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

ACTIONS = {"joinevents"}


def parse_request(body: bytes) -> tuple[str, list[Any]]:
    """(SecretKey, Data) of a JoinEvents body. Raises BadRequest (101) or MissingField (1140)."""
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
    """JoinEvents: authenticate by ``Token.SecretKey``, keep the valid records, dead-letter the others."""

    def __init__(self, settings: Settings, keystore: KeyStore, publisher: Publisher, metrics: Metrics) -> None:
        self.settings = settings
        self.keystore = keystore
        self.publisher = publisher
        self.metrics = metrics
        self.max_body_bytes = settings.max_body_bytes
        self.max_records = settings.max_events

    @falcon.before(check_content_length)
    def on_post(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        if action.lower() not in ACTIONS:
            raise UnknownAction(f"unknown action {action[:64]!r}; this service implements JoinEvents")
        received_at_ms = int(time.time() * 1000)
        secret, data = parse_request(read_body(req, self.max_body_bytes))
        account = self.keystore.account_for(secret)
        if account is None:
            raise Unauthorized("invalid secret key")
        if data is None:
            raise MissingField("Data is missing")
        if not isinstance(data, list):
            raise MissingField("Data must be an array of records")
        if len(data) > self.max_records:
            raise TooLarge(f"Data has {len(data)} records; the limit is {self.max_records}")

        messages, accepted, ignored = self.build_messages(account, data, received_at_ms)
        started = time.perf_counter()
        try:
            if messages:
                self.publisher.publish(messages)
        except PublishUnavailable as exc:  # transient: the client retries after Retry-After
            self.metrics.publish_latency.labels("joins", "unavailable").observe(time.perf_counter() - started)
            raise Unavailable(f"{exc}; retry the same request", self.settings.publish_timeout_s) from None
        self.metrics.publish_latency.labels("joins", "ok").observe(time.perf_counter() - started)
        self.metrics.accepted.labels("joins").inc(accepted)
        for rule in ignored:
            self.metrics.rejected.labels("joins", rule).inc()
        resp.status = falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        resp.text = ZIDIUM_SUCCESS

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
