"""Content-Encoding gzip/deflate (SPEC §1.1): decompression bounded by the body limit, on both routes; 415 for
other codings; an error answered before the body was read closes the connection."""

from __future__ import annotations

import dataclasses
import gzip
import json
import tracemalloc
import zlib
from urllib.parse import urlencode

import falcon.testing
import pytest
from hypothesis import given, settings, strategies as st

from ingest_gateway.app import create_app
from ingest_gateway.bodies import inflate
from ingest_gateway.errors import BadRequest, TooLarge

from .helpers import FORM, KEY, event, seed_join_body

MiB = 1024 * 1024


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def bomb(member_mib: int, members: int) -> bytes:
    """Concatenated gzip members of zeros: ``member_mib * members`` MiB once decompressed, about a thousandth as
    sent."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    member = b"".join(c.compress(zeros) for _ in range(member_mib)) + c.flush()
    return member * members


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("coding, encode", [
    ("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", raw_deflate)])
def test_inflate_round_trips(coding, encode) -> None:
    data = json.dumps([event()] * 50).encode()
    assert inflate(pieces(encode(data), 7), coding, len(data)) == data


def test_concatenated_gzip_members_are_one_body() -> None:
    assert inflate([gzip.compress(b"abc") + gzip.compress(b"def")], "gzip", 6) == b"abcdef"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 500), st.sampled_from(["gzip", "deflate"]))
def test_chunk_boundaries_do_not_matter(data: bytes, size: int, coding: str) -> None:
    sent = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
    assert inflate(pieces(sent, size), coding, 3000) == data


def test_the_limit_applies_to_the_decompressed_size() -> None:
    data = b"x" * 1000
    assert inflate([gzip.compress(data)], "gzip", 1000) == data
    with pytest.raises(TooLarge, match="once decompressed"):
        inflate([gzip.compress(data)], "gzip", 999)


def test_a_bomb_of_gibibytes_never_costs_more_than_the_limit() -> None:
    limit = 10 * MiB
    sent = bomb(64, 100)  # 6.25 GiB of zeros, about 6 MB as sent
    assert len(sent) < limit
    chunks = pieces(sent, 64 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            inflate(chunks, "gzip", limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * limit, f"peak {peak} bytes while decompressing"


@pytest.mark.parametrize("coding, sent, words", [
    ("gzip", b"not gzip at all", "not gzip data"),
    ("gzip", gzip.compress(b"x" * 100)[:-5], "truncated"),
    ("gzip", gzip.compress(b"abc") + b"trailing", "not gzip data"),
    ("deflate", b"\x78\x9c garbage", "cannot be decompressed"),
    ("deflate", zlib.compress(b"abc") + b"more", "data after its end"),
    ("gzip", b"\x1f", "truncated"),
])
def test_invalid_compressed_bodies_are_bad_requests(coding, sent, words) -> None:
    with pytest.raises(BadRequest, match=words):
        inflate(pieces(sent, 3), coding, 1000)


# --- through the app -------------------------------------------------------------------------------------------

def v3(client, body: bytes, headers: dict):
    return client.simulate_post("/v3/events", body=body, headers={**FORM, "X-Api-Key": KEY, **headers})


@pytest.mark.parametrize("name, encode", [("gzip", gzip.compress), ("x-gzip", gzip.compress),
                                          ("deflate", zlib.compress), ("Deflate", raw_deflate),
                                          ("identity", lambda b: b), ("gzip, identity", gzip.compress)])
def test_v3_accepts_compressed_bodies(client, publisher, name, encode) -> None:
    body = urlencode({"data": json.dumps([event(), event(action="END")])}).encode()
    result = v3(client, encode(body), {"Content-Encoding": name})
    assert (result.status_code, result.json) == (200, {"APIVersion": 3, "result": 1})
    assert len(publisher.messages) == 2


@pytest.mark.parametrize("name, encode", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_joins_accept_compressed_bodies(client, publisher, name, encode) -> None:
    body = seed_join_body(KEY, ["6f6f1c38-7c1b-4a2e-9d1b-3a8a0e8b1f01"] * 3).encode()
    result = client.simulate_post("/api/JoinEvents", body=encode(body),
                                  headers={"Content-Type": "application/json", "Content-Encoding": name})
    assert result.status_code == 200 and result.json["Code"] == 10
    assert publisher.messages


@pytest.mark.parametrize("name", ["br", "compress", "zstd", "gzip, gzip", "gzip, br"])
def test_other_encodings_are_415_with_the_routes_error_body(client, publisher, name) -> None:
    result = v3(client, b"data=[]", {"Content-Encoding": name})
    assert result.status_code == 415 and result.json["error"]["code"] == 5
    assert "content encoding" in result.json["error"]["message"]
    assert result.headers.get("Connection") == "close"
    result = client.simulate_post("/api/JoinEvents", body=b"{}", headers={"Content-Encoding": name})
    assert result.status_code == 415 and result.json["Code"] == 101 and "content encoding" in result.json["ErrorMessage"]
    assert publisher.messages == []


def test_a_content_type_the_joins_route_cannot_read_stays_code_101_in_a_200(client, publisher) -> None:
    # SPEC §1.2: request-level codes come in an HTTP 200, as Zidium's clients expect; only an encoding is a 415.
    result = client.simulate_post("/api/JoinEvents", body=b"<xml/>", headers={"Content-Type": "text/xml"})
    assert result.status_code == 200 and result.json["Code"] == 101
    assert publisher.messages == []


def test_413_when_the_decompressed_body_is_over_the_limit(gw_settings, keystore, publisher) -> None:
    small = dataclasses.replace(gw_settings, max_body_bytes=1000)
    client = falcon.testing.TestClient(create_app(small, keystore, publisher))
    body = urlencode({"data": json.dumps([event(entities=[{"key": "k", "value": "v" * 2000}])])}).encode()
    sent = gzip.compress(body)
    assert len(sent) < 1000
    result = v3(client, sent, {"Content-Encoding": "gzip"})
    assert result.status_code == 413 and result.json["error"]["code"] == 4
    assert "once decompressed" in result.json["error"]["message"]
    assert result.headers.get("Connection") == "close"
    result = client.simulate_post("/api/JoinEvents", body=gzip.compress(b" " * 2000),
                                  headers={"Content-Encoding": "gzip"})
    assert result.status_code == 413 and result.json["Code"] == 101
    assert publisher.messages == []


def test_a_corrupt_compressed_body_is_a_bad_request(client) -> None:
    result = v3(client, b"\x1f\x8b not really", {"Content-Encoding": "gzip"})
    assert result.status_code == 400 and result.json["error"]["code"] == 1
    result = client.simulate_post("/api/JoinEvents", body=b"plain", headers={"Content-Encoding": "gzip"})
    assert result.status_code == 200 and result.json["Code"] == 101
