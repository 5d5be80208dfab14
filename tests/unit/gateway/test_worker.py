"""The pure parts of the gateway's gunicorn worker (the worker itself is tested over real sockets in
tests/integration/gateway/test_edge.py)."""

from __future__ import annotations

import pytest

from ingest_gateway.worker import PREREAD_BODY_BYTES, body_length, body_to_preread, close_when_asked, read_deadline


@pytest.mark.parametrize("head, length", [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n", 42),
    (b"POST / HTTP/1.1\r\ncontent-length:7\r\nHost: x\r\n", 7),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n", 5),   # repeated, same value
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n", None),  # conflicting: gunicorn refuses
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n", None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", None),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", None),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n", None),
    (b"POST / HTTP/1.1\r\nX-Content-Length: 9\r\n", None),
])
def test_body_length_of_a_head(head: bytes, length: int | None) -> None:
    assert body_length(head) == length


@pytest.mark.parametrize("head, wanted", [
    (b"POST / HTTP/1.1\r\nContent-Length: 31000\r\n", 31000),
    (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n" % PREREAD_BODY_BYTES, PREREAD_BODY_BYTES),
    (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n" % (PREREAD_BODY_BYTES + 1), 0),  # its thread reads it
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", 0),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n", 0),  # curl waits for 100 first
    (b"POST / HTTP/1.1\r\nexpect:100-Continue\r\nContent-Length: 2000\r\n", 0),
])
def test_how_much_body_the_event_loop_waits_for(head: bytes, wanted: int) -> None:
    assert body_to_preread(head) == wanted


def test_the_deadline_grows_with_the_body_at_the_minimum_rate() -> None:
    assert read_deadline(100.0, 0, 10.0, 1000, 50_000) == 110.0
    assert read_deadline(100.0, 5000, 10.0, 1000, 50_000) == 115.0
    assert read_deadline(100.0, None, 10.0, 1000, 50_000) == 160.0  # chunked: as if the largest body


class FakeResponse:
    def __init__(self) -> None:
        self.closed = False
        self.started: tuple | None = None

    def force_close(self) -> None:
        self.closed = True

    def start_response(self, status, headers, exc_info=None):
        self.started = (status, headers)
        return lambda data: None


@pytest.mark.parametrize("headers, closes", [
    ([("Content-Type", "application/json"), ("Connection", "close")], True),
    ([("connection", " Close ")], True),
    ([("Content-Type", "application/json")], False),
    ([("Connection", "keep-alive")], False),
])
def test_connection_close_from_the_app_closes_the_connection(headers, closes) -> None:
    def app(environ, start_response):
        start_response("413 Payload Too Large", headers)
        return [b"{}"]

    response = FakeResponse()
    assert close_when_asked(app)({}, response.start_response) == [b"{}"]
    assert response.closed is closes and response.started == ("413 Payload Too Large", headers)
