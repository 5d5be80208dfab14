"""consumers/keys.py gives exactly what json and uuid give (the keys and state are persisted: a different text
would orphan every state written before)."""

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from consumers.joins import JOINED_EVENT_NAMESPACE
from consumers.keys import dumps, split_key, strings_key, uuid5_int, uuid_text

# ids as clients send them, and anything else text can hold (quotes, backslashes, controls, lone surrogates)
PART = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.text(max_size=20) | st.sampled_from(
    ['', '"', "\\", '","', '["', '"]', "\x00", "\x1f", "\x7f", "\u2028", "ü", "\ud800"])


@given(st.lists(PART, min_size=1, max_size=5))
def test_strings_key_is_json_dumps_and_split_key_is_json_loads(parts: list[str]) -> None:
    key = strings_key(*parts)
    assert key == json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    assert split_key(key) == json.loads(key) == parts


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=4), max_leaves=12))
def test_dumps_is_json_dumps(value: object) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_uuid5_int_is_uuid5_and_uuid_text_its_text(name: str) -> None:
    expected = uuid.uuid5(JOINED_EVENT_NAMESPACE, name)
    assert uuid5_int(JOINED_EVENT_NAMESPACE, name) == expected.int and uuid_text(expected.int) == str(expected)
