"""Reading request bodies within the limits, and taking apart the containers the APIs accept.

Every failure is a ``GatewayError`` (invalid input); nothing here raises anything else for bytes a client sends.
"""

from __future__ import annotations

import binascii
import io
import zlib
from typing import Any, Iterable, Iterator
from urllib.parse import unquote_to_bytes

import falcon
from falcon.media.multipart import MultipartFormHandler, MultipartParseError, MultipartParseOptions

from . import jsontext
from .errors import BadRequest, BodyNotReceived, TooLarge, UnsupportedEncoding, UnsupportedMediaType

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
MAX_FORM_FIELDS = 100
CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
READ_CHUNK = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
INFLATE_STEP = 256 * 1024  # decompressed bytes per step: the most held besides the body itself


def check_content_length(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Falcon ``before`` hook: refuse a declared body over the limit before reading a byte of it (the error handler
    then reads and discards it, up to a bound, so that the client can read the 413)."""
    limit = resource.max_body_bytes
    if req.content_length is not None and req.content_length > limit:
        raise TooLarge(f"the body is {req.content_length} bytes; the limit is {limit} bytes")


def content_coding(req: falcon.Request) -> str:
    """The body's ``Content-Encoding``: ``''`` (none or identity), ``'gzip'`` or ``'deflate'``.

    Raises UnsupportedEncoding (415) for any other coding, and for stacked codings (``gzip, gzip``)."""
    raw = (req.get_header("Content-Encoding") or "").lower()
    codings = [c.strip() for c in raw.split(",") if c.strip() and c.strip() != "identity"]
    if not codings:
        return ""
    if len(codings) == 1 and codings[0] in CODINGS:
        return CODINGS[codings[0]]
    raise UnsupportedEncoding(f"content encoding {raw.strip()[:64]!r} is not supported; send the body as it is, "
                               "or with Content-Encoding: gzip or deflate")


def _wire_stream(req: falcon.Request) -> Any:
    # Falcon's bounded_stream reads nothing of a body without Content-Length; the server's own input (gunicorn
    # decodes chunked transfer) ends where the body ends.
    return req.bounded_stream if req.content_length is not None else req.stream


def _wire_chunks(req: falcon.Request, limit: int) -> Iterator[bytes]:
    """The body as sent, in pieces, at most ``limit`` bytes in all. Raises TooLarge and BodyNotReceived."""
    stream = _wire_stream(req)
    total = 0
    while True:
        try:
            chunk = stream.read(READ_CHUNK)
        except OSError as exc:  # invalid input: the client stalled past its deadline or went away
            raise BodyNotReceived(f"the body was not received: {exc or type(exc).__name__}") from None
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        yield chunk


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, decompressed, at most ``limit`` bytes both as sent and decompressed (chunked bodies
    included). Blocks on the socket; raises TooLarge, UnsupportedMediaType, BadRequest or BodyNotReceived."""
    coding = content_coding(req)
    if not coding:
        return b"".join(_wire_chunks(req, limit))
    return inflate(_wire_chunks(req, limit), coding, limit)


def _decompressor(coding: str, head: bytes) -> Any:
    if coding == "gzip":
        if not head.startswith(GZIP_MAGIC):
            raise BadRequest("the body is not gzip data (Content-Encoding: gzip)")
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2), but some clients send raw deflate: a zlib stream
    # starts with a header whose method is 8 and whose first two bytes are a multiple of 31.
    zlib_wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)


def inflate(chunks: Iterable[bytes], coding: str, limit: int) -> bytes:
    """Decompress ``chunks`` (``coding`` 'gzip' or 'deflate'), never holding more than ``limit`` + 1 decompressed
    bytes: each step produces at most INFLATE_STEP bytes and never more than is left below the limit, so a
    "zip bomb" costs the limit in memory, not its decompressed size. Concatenated gzip members are one body.

    Pure (but it drives ``chunks``). Raises TooLarge past the limit, BadRequest for data that is not valid."""
    out = bytearray()
    decoder = None
    pending = b""  # the start of a stream, until there are enough bytes to recognise its header
    try:
        for chunk in chunks:
            data = pending + chunk
            pending = b""
            while data:
                if decoder is None:
                    if len(data) < 2:
                        pending = data
                        break
                    decoder = _decompressor(coding, data)
                out += decoder.decompress(data, min(INFLATE_STEP, limit + 1 - len(out)))
                if len(out) > limit:
                    raise TooLarge(f"the body is over the limit of {limit} bytes once decompressed")
                if decoder.eof:
                    data, decoder = decoder.unused_data, None  # another gzip member may follow
                    if data and coding == "deflate":
                        raise BadRequest("the deflate body has data after its end")
                else:
                    data = decoder.unconsumed_tail  # what did not fit in this step
    except zlib.error as exc:  # invalid input
        raise BadRequest(f"the body cannot be decompressed ({coding}): {exc}") from None
    if pending or (decoder is not None and not decoder.eof):
        raise BadRequest(f"the {coding} body is truncated")
    return bytes(out)


def drain_body(req: falcon.Request, bound: int) -> bool:
    """Read and discard what is left of the body, at most ``bound`` bytes, so that a client that writes its whole
    body before reading (most HTTP libraries) reads the answer instead of a reset connection.

    Blocks (each read within the client's deadline). Returns True when the body was read to its end."""
    if req.content_length is not None and req.content_length > bound:
        return False  # far beyond any limit: not worth reading, the connection is closed at once
    try:
        for _ in _wire_chunks(req, bound):
            pass
    except (TooLarge, BodyNotReceived):  # beyond the bound, or the client stalled or went away: close
        return False
    return True


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
