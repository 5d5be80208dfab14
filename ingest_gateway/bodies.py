"""Reading request bodies within the limits, and taking apart the containers the APIs accept.

Every failure is a ``GatewayError`` (invalid input); nothing here raises anything else for bytes a client sends.
"""

from __future__ import annotations

import binascii
import io
from typing import Any
from urllib.parse import unquote_to_bytes

import falcon
from falcon.media.multipart import MultipartFormHandler, MultipartParseError, MultipartParseOptions

from . import jsontext
from .errors import BadRequest, TooLarge, UnsupportedMediaType

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
MAX_FORM_FIELDS = 100


def check_content_length(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Falcon ``before`` hook: refuse a declared body over the limit before reading a byte of it."""
    limit = resource.max_body_bytes
    if req.content_length is not None and req.content_length > limit:
        raise TooLarge(f"the body is {req.content_length} bytes; the limit is {limit} bytes")


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (chunked bodies included). Blocks on the socket; raises TooLarge."""
    data = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"the body is over the limit of {limit} bytes")
    return data


def media_type(req: falcon.Request) -> str:
    """The request's media type, lower-case, without parameters ('' when absent)."""
    return (req.content_type or "").split(";", 1)[0].strip().lower()


def _is_json_type(mtype: str) -> bool:
    return mtype in (JSON, "text/json") or (mtype.startswith("application/") and mtype.endswith("+json"))


def sniff(body: bytes) -> str:
    """For a request without Content-Type: JSON when the body starts like JSON, else a form."""
    head = body.lstrip()[:1]
    return JSON if head in (b"[", b"{") else FORM


def unquote_plus_bytes(value: bytes) -> bytes:
    """``application/x-www-form-urlencoded`` decoding of one name or value, as ``urllib.parse`` does it.

    The standard library decodes ``%XX`` escapes in a Python loop — about 4 ms for a fully encoded batch of 100
    events.  ``binascii.a2b_qp`` decodes ``=XX`` escapes in C, so well-formed input is rewritten to that form
    (literal ``=`` first escaped as ``=3D``).  The two only differ on malformed escapes or line breaks; the length
    check catches the former (every valid escape shortens the value by exactly two bytes), and values with line
    breaks or any mismatch take the standard library's path.
    """
    value = value.replace(b"+", b" ")
    escapes = value.count(b"%")
    if not escapes:
        return value
    if b"\r" not in value and b"\n" not in value:
        decoded = binascii.a2b_qp(value.replace(b"=", b"=3D").replace(b"%", b"="))
        if len(decoded) == len(value) - 2 * escapes:
            return decoded
    return unquote_to_bytes(value)


def parse_form(body: bytes) -> dict[str, str]:
    """Fields of an urlencoded body (the first of repeated names wins). Raises BadRequest for bad encodings."""
    pairs = [p for p in body.split(b"&") if p]
    if len(pairs) > MAX_FORM_FIELDS:
        raise BadRequest(f"the form body has more than {MAX_FORM_FIELDS} fields")
    fields: dict[str, str] = {}
    try:
        for pair in pairs:
            raw_name, _, raw_value = pair.partition(b"=")
            name = unquote_plus_bytes(raw_name).decode("utf-8")
            if name not in fields:
                fields[name] = unquote_plus_bytes(raw_value).decode("utf-8")
    except UnicodeDecodeError:  # invalid input
        raise BadRequest("the form body is not valid UTF-8") from None
    return fields


def parse_multipart(body: bytes, content_type: str, limit: int) -> dict[str, str]:
    """Text fields of a multipart/form-data body (the first of repeated names wins). Raises BadRequest."""
    options = MultipartParseOptions()
    options.max_body_part_buffer_size = limit
    options.max_body_part_count = MAX_FORM_FIELDS
    handler = MultipartFormHandler(options)
    fields: dict[str, str] = {}
    try:
        form = handler.deserialize(io.BytesIO(body), content_type, len(body))
        for part in form:
            name = part.name
            data = part.get_data()
            if name and name not in fields:
                fields[name] = data.decode("utf-8")
    except UnicodeDecodeError:  # invalid input
        raise BadRequest("a multipart field is not valid UTF-8") from None
    except (MultipartParseError, falcon.HTTPError) as exc:  # falcon raises HTTPInvalidHeader for a bad boundary
        raise BadRequest(f"the multipart body cannot be read: {getattr(exc, 'description', None) or exc}") from None
    return fields


def v3_container(req: falcon.Request, body: bytes, limit: int) -> tuple[dict[str, str] | None, Any]:
    """Split a v3 body into (form fields, parsed JSON document).

    Form bodies give ``(fields, None)``: the ``data`` field is parsed later, after authentication.  JSON bodies
    give ``(None, document)``, with ``document`` a ``JSONError`` instance when the body is not JSON (so that a
    missing key is still reported as 401).  Raises UnsupportedMediaType or BadRequest.
    """
    mtype = media_type(req) or sniff(body)
    if mtype == FORM:
        return parse_form(body), None
    if mtype == MULTIPART:
        return parse_multipart(body, req.content_type or "", limit), None
    if _is_json_type(mtype):
        try:
            return None, jsontext.loads(body)
        except jsontext.JSONError as exc:  # invalid input, reported after authentication
            return None, exc
    raise UnsupportedMediaType(f"content type {mtype!r} is not supported; send {FORM}, {MULTIPART} or {JSON}")
