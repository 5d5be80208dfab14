"""Domain errors of the gateway and how each API renders them.

Resources raise API-neutral ``GatewayError``s (invalid input or Kafka unavailable); one error handler turns them
into the body format of the API the request was for (``req.context.api``): the v3 envelope with ``result: 0``
and a numeric code, or a Zidium ``{"Code": …}`` body.  Anything else that escapes a responder is a bug: it is
logged with its traceback and answered with a bare 500 that shows none of it.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import falcon

from .jsontext import dumps_compact

log = logging.getLogger(__name__)

V3 = "v3"
ZIDIUM = "zidium"


class GatewayError(Exception):
    """Base: a request that cannot be accepted. ``kind`` selects the status and code of each API."""

    kind = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequest(GatewayError):
    """Invalid input: no/unparsable data, not an array, empty batch (v3 code 1; Zidium 101)."""

    kind = "bad_request"


class MissingField(GatewayError):
    """Invalid input: a required request-level field is missing (Zidium 1140; v3 code 1)."""

    kind = "missing_field"


class Unauthorized(GatewayError):
    """Invalid input: missing or unknown API key (v3 401/2; Zidium 1002)."""

    kind = "unauthorized"


class InvalidEvents(GatewayError):
    """Invalid input: one or more events break a rule; ``details`` lists each (v3 422/3)."""

    kind = "invalid"


class TooLarge(GatewayError):
    """Invalid input: body or batch over the configured limit (413; v3 code 4)."""

    kind = "too_large"


class UnsupportedMediaType(GatewayError):
    """Invalid input: a content type the API does not read (415; v3 code 5)."""

    kind = "unsupported_media"


class UnsupportedEncoding(UnsupportedMediaType):
    """Invalid input: a Content-Encoding other than gzip or deflate (415 on every route, SPEC §1.1; the Zidium
    route too, where a content type it cannot read stays HTTP 200 with Code 101 as Zidium's clients expect)."""

    kind = "unsupported_encoding"


class BodyNotReceived(GatewayError):
    """Invalid input: the body did not arrive within the client's read deadline, or the connection broke (408)."""

    kind = "not_received"


class UnknownAction(GatewayError):
    """Invalid input: a Zidium action other than JoinEvents (Code 100)."""

    kind = "unknown_action"


class ZidiumError(GatewayError):
    """Invalid input that only the Zidium API knows, answered HTTP 200 with its own ``code`` (ResponseCode.cs)."""

    kind = "zidium"
    code = 1141

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidParameter(ZidiumError):
    """A request field is present but unusable (Zidium ParameterError, 1141)."""

    code = 1141


class UnknownComponent(ZidiumError):
    """No component with that id is known (Zidium UnknownComponentId, 1100)."""

    code = 1100


class FutureEvent(ZidiumError):
    """An event dated too far after its arrival (Zidium FutureEvent, 1151); nothing is stored."""

    code = 1151


class Unavailable(GatewayError):
    """Transient: Kafka did not acknowledge in time (503 + Retry-After; v3 code 7, Zidium 1190). Retry is safe."""

    kind = "unavailable"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# kind -> (HTTP status, code) for each API
V3_CODES: dict[str, tuple[int, int]] = {
    "bad_request": (400, 1),
    "missing_field": (400, 1),
    "unauthorized": (401, 2),
    "invalid": (422, 3),
    "too_large": (413, 4),
    "unsupported_media": (415, 5),
    "unsupported_encoding": (415, 5),
    "not_received": (408, 1),
    "unknown_action": (404, 1),
    "zidium": (400, 1),
    "unavailable": (503, 7),
}
ZIDIUM_CODES: dict[str, tuple[int, int]] = {
    "bad_request": (200, 101),
    "missing_field": (200, 1140),
    "unauthorized": (200, 1002),
    "invalid": (200, 101),
    "too_large": (413, 101),
    "unsupported_media": (200, 101),
    "unsupported_encoding": (415, 101),
    "not_received": (408, 101),
    "unknown_action": (200, 100),
    "zidium": (200, 1141),  # the code itself comes from the ZidiumError
    "unavailable": (503, 1190),
}

V3_SUCCESS = dumps_compact({"APIVersion": 3, "result": 1})
ZIDIUM_SUCCESS = dumps_compact({"Data": "", "Code": 10})


def v3_body(code: int, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {"APIVersion": 3, "result": 0, "error": {"code": code, "message": message, "details": details}}


def zidium_body(code: int, message: str) -> dict[str, Any]:
    return {"Code": code, "ErrorMessage": message, "Data": ""}


def render(req: falcon.Request, resp: falcon.Response, error: GatewayError) -> int:
    """Write ``error`` in the format of the request's API; returns the API code (for metrics)."""
    api = getattr(req.context, "api", V3)
    if api == ZIDIUM:
        status, code = ZIDIUM_CODES[error.kind]
        if isinstance(error, ZidiumError):
            code = error.code
        body = zidium_body(code, error.message)
    else:
        status, code = V3_CODES[error.kind]
        body = v3_body(code, error.message, error.details)
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = dumps_compact(body, ascii_only=True)
    if isinstance(error, Unavailable):
        resp.set_header("Retry-After", str(max(1, math.ceil(error.retry_after_s))))
    req.context.api_code = code
    return code


# Errors after which the rest of the request cannot be trusted to be read: the connection is closed after them.
CLOSING_KINDS = frozenset({"too_large", "unsupported_media", "unsupported_encoding", "not_received"})


class GatewayErrorHandler:
    """Falcon error handler for every ``GatewayError``: renders it, then reads and discards what the client still
    sends of its body with ``drain`` (``bodies.drain_body`` up to a bound: True when it read the body to its end),
    so that a client that writes its whole body before reading gets to read the answer; after an error of
    ``CLOSING_KINDS`` or a body not read to its end the connection is closed (``Connection: close``, which the
    worker honours)."""

    def __init__(self, drain: Callable[[falcon.Request], bool]) -> None:
        self.drain = drain

    def __call__(self, req: falcon.Request, resp: falcon.Response, error: GatewayError, params: dict) -> None:
        render(req, resp, error)
        drained = error.kind != "not_received" and self.drain(req)
        if error.kind in CLOSING_KINDS or not drained:
            resp.set_header("Connection", "close")


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: dict) -> None:
    """A bug escaped a responder: log it loudly, answer 500 without details, keep serving."""
    if isinstance(error, falcon.HTTPError):  # falcon's own 404/405/400 keep their status and JSON body
        resp.status = error.status
        resp.content_type = falcon.MEDIA_JSON
        resp.text = dumps_compact(error.to_dict(), ascii_only=True)
        for name, value in (error.headers or {}).items():
            resp.set_header(name, value)
        return
    log.exception("bug: unhandled %s on %s %s", type(error).__name__, req.method, req.path)
    api = getattr(req.context, "api", None)
    resp.status = 500
    resp.content_type = falcon.MEDIA_JSON
    if api == ZIDIUM:
        resp.text = dumps_compact(zidium_body(1, "internal error"))
    else:
        resp.text = dumps_compact(v3_body(0, "internal error", []))
