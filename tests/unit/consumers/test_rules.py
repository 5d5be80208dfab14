"""SPEC §1 rules as the consumers re-check them on records from Kafka."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from consumers import rules

GOOD_EVENT = {"account_id": "acc", "event_id": "e1", "action": "START", "type": "APPSTART", "timestamp": 1365772427,
              "session": "8nc92io9q", "entities": [{"key": "app", "value": '"BigBrother"'}, {"key": "n", "value": "42"}],
              "received_at": dt.datetime(2013, 4, 12, 13, 20, tzinfo=dt.timezone.utc)}
GOOD_JOIN = {"account_id": "acc", "record_id": "r1", "event_id": None,
             "component_id": "6f9619ff-8b86-d011-b42d-00cf4fc964ff", "type_id": "6f9619ff-8b86-d011-b42d-00cf4fc964fe",
             "join_key": 0, "start_date": dt.datetime(2016, 4, 30, tzinfo=dt.timezone.utc), "join_interval": 600.0,
             "importance": "Alarm", "count": 1, "message": "m", "version": None,
             "received_at": dt.datetime(2016, 4, 30, 1, tzinfo=dt.timezone.utc)}
TYPES = frozenset({"APPSTART", "SCREEN"})


def with_(base: dict, **changes: object) -> dict:
    record = copy.deepcopy(base)
    record.update(changes)
    return record


@pytest.mark.parametrize("changes, reason", [
    ({}, None),
    ({"session": None, "action": "UPDATE"}, None),
    ({"account_id": ""}, "account_id: empty"),
    ({"event_id": ""}, "event_id: must be 1..255 characters"),
    ({"type": "NOPE"}, "type: 'NOPE' is not one of the configured types"),
    ({"timestamp": 1365772427000}, "timestamp: looks like milliseconds; UNIX seconds expected"),
    ({"timestamp": -1}, "timestamp: negative"),
    ({"timestamp": 1365772800 + 3600}, None),  # received_at + the default hour: still fine
    ({"timestamp": 1365772800 + 3601}, "timestamp: more than 3600 s after received_at"),
    ({"session": None, "action": "END"}, "session: required for END"),
    ({"session": "short"}, "session: must be 8..20 characters"),
    ({"session": "x" * 21}, "session: must be 8..20 characters"),
    ({"entities": [{"key": "", "value": "1"}]}, "entities[0].key: empty"),
    ({"entities": [{"key": "k", "value": "not json"}]}, "entities[0].value: not JSON text"),
])
def test_event_rules(changes: dict, reason: str | None) -> None:
    assert rules.check_event(with_(GOOD_EVENT, **changes), TYPES) == reason


def test_without_a_types_file_every_type_passes(tmp_path) -> None:
    assert rules.load_event_types(str(tmp_path / "missing.txt")) is None
    assert rules.check_event(with_(GOOD_EVENT, type="ANY"), None) is None


def test_the_types_file_is_read_with_comments(tmp_path) -> None:
    path = tmp_path / "types.txt"
    path.write_text("# comment\nAPPSTART\n\nSCREEN  # trailing\n")
    assert rules.load_event_types(str(path)) == {"APPSTART", "SCREEN"}


@pytest.mark.parametrize("value, text", [('"BigBrother"', "BigBrother"), ("42", "42"), ("null", "null"),
                                         ("[1,2]", "[1,2]"), ('{"a":1}', '{"a":1}'), ('"a\\"b"', 'a"b')])
def test_check_event_sets_each_entitys_clickhouse_text(value: str, text: str) -> None:
    event = with_(GOOD_EVENT, entities=[{"key": "k", "value": value}])
    assert rules.check_event(event, TYPES) is None
    assert event["entities"][0]["text"] == text


@pytest.mark.parametrize("changes, reason", [
    ({"start_date": dt.datetime(2016, 4, 30, 2, tzinfo=dt.timezone.utc)}, None),
    ({"start_date": dt.datetime(2016, 4, 30, 2, 0, 1, tzinfo=dt.timezone.utc)}, "start_date: more than 3600 s after received_at"),
    ({}, None),
    ({"component_id": "not-a-guid"}, "component_id: not a lower-case GUID"),
    ({"type_id": "6F9619FF-8B86-D011-B42D-00CF4FC964FF"}, "type_id: not a lower-case GUID"),
    ({"event_id": "x"}, "event_id: not a lower-case GUID"),
    ({"join_interval": -1.0}, "join_interval: must be a finite number of seconds >= 0"),
    ({"join_interval": float("nan")}, "join_interval: must be a finite number of seconds >= 0"),
    ({"message": "m" * 8001}, "message: longer than 8000 characters"),
    ({"version": "v" * 256}, "version: longer than 255 characters"),
])
def test_join_record_rules(changes: dict, reason: str | None) -> None:
    assert rules.check_join_record(with_(GOOD_JOIN, **changes)) == reason


def test_a_count_below_one_means_one() -> None:
    record = with_(GOOD_JOIN, count=0)
    assert rules.check_join_record(record) is None and record["count"] == 1


# --- the entity-value fast path gives exactly what json.loads gives ---------------------------------------------
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from consumers.rules import entity_text  # noqa: E402

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=6)


def reference_text(value: str) -> str | None:
    import json

    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, str) else value


@hsettings(max_examples=400, deadline=None)
@given(json_values, st.booleans())
def test_entity_text_equals_the_json_parser_on_json(value, ascii_only) -> None:
    import json

    text = json.dumps(value, ensure_ascii=ascii_only)
    assert entity_text(text) == reference_text(text)


@hsettings(max_examples=400, deadline=None)
@given(st.text() | st.sampled_from(['"a\\"', '"\\u00e9"', '"tab\there"', "01", "-", "1.", ".5", "1e", "tru", "nul",
                                    " 1", "1 ", '"x" ', "NaN", "-Infinity", '"\\ud800"', "1E+2", "-0.0e-0"]))
def test_entity_text_equals_the_json_parser_on_anything(text) -> None:
    assert entity_text(text) == reference_text(text)
