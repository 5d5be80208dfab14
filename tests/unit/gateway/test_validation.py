"""The rules of SPEC §1.1 and §1.2, one case per rule, as pure functions."""

from __future__ import annotations

import pytest

from eventpipe.contract import load_event_types
from ingest_gateway.validation import (JoinFields, Limits, Rejection, json_depth_exceeds,
                                       parse_start_date, validate_events, validate_join_record)

from .helpers import event

TYPES = frozenset({"APPSTART", "SCREEN"})
LIMITS = Limits(max_events=100, max_entities=3, max_string_chars=50, max_json_depth=4)


def errors_of(raw) -> list[tuple[str, str]]:
    _, errors = validate_events([raw], TYPES, LIMITS)
    return [(e.field, e.rule) for e in errors]


@pytest.mark.parametrize("raw, expected", [
    (event(), []),
    (event(session=...), []),                                   # session optional for START
    (event(action="UPDATE", session=None), []),
    (event(entities=[]), []),
    (event(id="client-1"), []),
    (event(entities=[{"key": "k", "value": None}]), []),
    (event(entities=[{"key": "k", "value": {"a": [1, 2.5, True, None, "x"]}}]), []),
    (event(account_id="someone-else"), []),                     # unknown members are ignored
    ([1, 2], [("", "type")]),
    ("event", [("", "type")]),
    (event(action=...), [("action", "required")]),
    (event(action="start"), [("action", "enum")]),
    (event(action=1), [("action", "enum")]),
    (event(type=...), [("type", "required")]),
    (event(type="NOPE"), [("type", "enum")]),
    (event(type=["APPSTART"]), [("type", "enum")]),
    (event(timestamp=...), [("timestamp", "required")]),
    (event(timestamp="1365772427"), [("timestamp", "integer")]),
    (event(timestamp=1365772427.5), [("timestamp", "integer")]),
    (event(timestamp=True), [("timestamp", "integer")]),
    (event(timestamp=1365772427000), [("timestamp", "seconds")]),
    (event(timestamp=-1), [("timestamp", "range")]),
    (event(action="END", session=...), [("session", "required")]),
    (event(action="END", session=None), [("session", "required")]),
    (event(session="short"), [("session", "length")]),
    (event(session="x" * 21), [("session", "length")]),
    (event(session=12345678), [("session", "string")]),
    (event(session="abc\ud800defgh"), [("session", "unicode")]),
    (event(entities=...), [("entities", "required")]),
    (event(entities={"key": "a", "value": 1}), [("entities", "array")]),
    (event(entities=[{"key": str(i), "value": i} for i in range(4)]), [("entities", "max_entities")]),
    (event(entities=["x"]), [("entities[0]", "object")]),
    (event(entities=[{"value": 1}]), [("entities[0].key", "required")]),
    (event(entities=[{"key": "", "value": 1}]), [("entities[0].key", "required")]),
    (event(entities=[{"key": 5, "value": 1}]), [("entities[0].key", "required")]),
    (event(entities=[{"key": "k" * 51, "value": 1}]), [("entities[0].key", "max_string_chars")]),
    (event(entities=[{"key": "k"}]), [("entities[0].value", "required")]),
    (event(entities=[{"key": "k", "value": "v" * 60}]), [("entities[0].value", "max_string_chars")]),
    (event(entities=[{"key": "k", "value": [[[[["deep"]]]]]}]), [("entities[0].value", "max_json_depth")]),
    (event(entities=[{"key": "k", "value": float("inf")}]), [("entities[0].value", "number")]),
    (event(entities=[{"key": "k", "value": "\udc00"}]), [("entities[0].value", "unicode")]),
    (event(id=""), [("id", "length")]),
    (event(id="i" * 65), [("id", "length")]),
    (event(id=7), [("id", "string")]),
])
def test_v3_rules(raw, expected) -> None:
    assert errors_of(raw) == expected


def test_every_broken_rule_of_an_event_is_reported() -> None:
    raw = {"action": "NOPE", "type": "NOPE", "timestamp": 1365772427000, "session": "x", "entities": [{"key": ""}]}
    assert [f for f, _ in errors_of(raw)] == ["action", "type", "timestamp", "session", "entities[0].key",
                                              "entities[0].value"]


def test_errors_name_the_index_of_each_invalid_event() -> None:
    events, errors = validate_events([event(), event(type="NOPE"), event(), event(timestamp="x")], TYPES, LIMITS)
    assert len(events) == 2
    assert [(e.index, e.field) for e in errors] == [(1, "type"), (3, "timestamp")]


def test_milliseconds_are_explained() -> None:
    _, errors = validate_events([event(timestamp=1365772427123)], TYPES, LIMITS)
    assert "milliseconds" in errors[0].message and "1365772427" in errors[0].message


def test_client_ids_must_be_unique_within_a_batch() -> None:
    _, errors = validate_events([event(id="a"), event(id="b"), event(id="a")], TYPES, LIMITS)
    assert [(e.index, e.field, e.rule) for e in errors] == [(2, "id", "unique")]


def test_entity_values_become_their_exact_json_text() -> None:
    values = ["BigBrother", 42, -1.5e-7, True, None, [1, "2"], {"b": 1, "a": {"c": []}}, "ünï\u2028", 2**70]
    events, errors = validate_events([event(entities=[{"key": "k", "value": v} for v in values])], TYPES,
                                     Limits(max_entities=20))
    assert not errors
    texts = [t for _, t in events[0].entities]
    assert texts == ['"BigBrother"', "42", "-1.5e-07", "true", "null", '[1,"2"]', '{"b":1,"a":{"c":[]}}',
                     '"ünï\u2028"', str(2**70)]


def test_json_depth() -> None:
    assert not json_depth_exceeds(1, 0)
    assert not json_depth_exceeds([[1]], 2)
    assert json_depth_exceeds([[1]], 1)
    assert json_depth_exceeds({"a": {"b": {}}}, 2)


def test_event_types_file(tmp_path) -> None:
    path = tmp_path / "types.txt"
    path.write_text("# comment\nAPPSTART\n\n  SCREEN  # trailing comment\n")
    assert load_event_types(path) == {"APPSTART", "SCREEN"}
    path.write_text("# nothing\n")
    with pytest.raises(ValueError):
        load_event_types(path)
    path.write_text("BAD TYPE\n")
    with pytest.raises(ValueError):
        load_event_types(path)


def test_the_repository_default_types_include_appstart() -> None:
    from eventpipe.settings import Settings

    assert "APPSTART" in load_event_types(Settings.from_env({}).event_types_file)


# --- join records -------------------------------------------------------------------------------------------------

C = "0F8FAD5B-D9CB-469F-A165-70867728950E"
T = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
NOW = 1_700_000_000_000


def join(**overrides) -> dict:
    base = {"ComponentId": C, "TypeId": T}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_join_defaults() -> None:
    assert validate_join_record(join(), NOW) == JoinFields(
        event_id=None, component_id=C.lower(), type_id=T, join_key=0, start_date_ms=NOW, join_interval=0.0,
        importance="Unknown", count=1, message="", version=None)


def test_join_seed_record() -> None:
    fields = validate_join_record(join(EventId=T.upper(), JoinKey=45648117245, StartDate="2016-04-30T23:25:43.511Z",
                                       JoinInterval=600, Importance="Alarm", Count=1, Message="Event message",
                                       Version="1.0.0.0"), NOW)
    assert fields == JoinFields(T, C.lower(), T, 45648117245, 1462058743511, 600.0, "Alarm", 1, "Event message",
                                "1.0.0.0")


@pytest.mark.parametrize("importance, expected", [
    ("alarm", "Alarm"), ("SUCCESS", "Success"), ("Warning", "Warning"), ("unknown", "Unknown"),
    (50, "Success"), (100, "Warning"), (150, "Alarm"), (0, "Unknown"), ("150", "Alarm"), (None, "Unknown"),
])
def test_join_importance(importance, expected) -> None:
    assert validate_join_record(join(Importance=importance), NOW).importance == expected


@pytest.mark.parametrize("count, expected", [(None, 1), (0, 1), (-5, 1), (1, 1), (7, 7)])
def test_join_count(count, expected) -> None:
    assert validate_join_record(join(Count=count), NOW).count == expected


def test_join_field_names_are_case_insensitive() -> None:
    fields = validate_join_record({"componentid": C, "TYPEID": T, "joinKey": 3}, NOW)
    assert fields.join_key == 3 and fields.component_id == C.lower()


@pytest.mark.parametrize("value, ms", [
    ("2016-04-30T23:25:43.511Z", 1462058743511),
    ("2016-04-30T23:25:43.5110000Z", 1462058743511),
    ("2016-04-30T23:25:43", 1462058743000),
    ("2016-05-01T02:25:43.511+03:00", 1462058743511),
    ("/Date(1462058743511)/", 1462058743511),
    ("not a date", None),
])
def test_start_dates(value, ms) -> None:
    assert parse_start_date(value) == ms


@pytest.mark.parametrize("raw, rule", [
    ("record", "record:object"),
    (join(ComponentId=...), "ComponentId:required"),
    (join(ComponentId="XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX"), "ComponentId:guid"),
    (join(TypeId=...), "TypeId:required"),
    (join(TypeId=5), "TypeId:guid"),
    (join(EventId="nope"), "EventId:guid"),
    (join(JoinKey="12"), "JoinKey:int64"),
    (join(JoinKey=2**63), "JoinKey:int64"),
    (join(JoinKey=1.5), "JoinKey:int64"),
    (join(StartDate="yesterday"), "StartDate:datetime"),
    (join(StartDate=1462058743), "StartDate:datetime"),
    (join(JoinInterval=-1), "JoinInterval:seconds"),
    (join(JoinInterval="600"), "JoinInterval:seconds"),
    (join(JoinInterval=float("inf")), "JoinInterval:seconds"),
    (join(Importance="Critical"), "Importance:enum"),
    (join(Importance=75), "Importance:enum"),
    (join(Count="3"), "Count:integer"),
    (join(Count=1.5), "Count:integer"),
    (join(Message=5), "Message:string"),
    (join(Message="m" * 8001), "Message:length"),
    (join(Version="v" * 256), "Version:length"),
    (join(Version=1), "Version:string"),
])
def test_join_rejections(raw, rule) -> None:
    result = validate_join_record(raw, NOW)
    assert isinstance(result, Rejection) and result.rule == rule and result.reason


def test_join_limits_are_inclusive() -> None:
    assert isinstance(validate_join_record(join(Message="m" * 8000, Version="v" * 255), NOW), JoinFields)
