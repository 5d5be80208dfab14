"""Form decoding: the fast path must agree with the standard library on every input."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

from hypothesis import given, settings, strategies as st

from ingest_gateway.bodies import parse_form, unquote_plus_bytes


@settings(max_examples=500)
@given(st.binary(max_size=200) | st.text(alphabet="%=+&aF0 9zZ\r\n_~", max_size=60).map(str.encode))
def test_unquote_agrees_with_the_standard_library(raw: bytes) -> None:
    assert unquote_plus_bytes(raw) == unquote_to_bytes(raw.replace(b"+", b" "))


@settings(max_examples=300)
@given(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=50), max_size=5))
def test_parse_form_agrees_with_parse_qsl(fields: dict) -> None:
    body = urlencode(fields).encode()
    try:
        expected = dict(parse_qsl(body.decode(), keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:  # lone surrogates in generated text cannot be form-encoded meaningfully
        return
    assert parse_form(body) == expected
