"""Event times far in the future are rejected: one would move a partition's event-time watermark and time out
every open session in it (consumers/sessions.py)."""

from ingest_gateway.validation import Limits, Rejection, validate_events, validate_join_record

NOW_S = 1_700_000_000
EVENT = {"action": "START", "type": "APPSTART", "session": "8nc92io9q", "entities": []}
RECORD = {"ComponentId": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "TypeId": "9b2c5f6e-3a4d-4e8f-9a1b-2c3d4e5f6a7b"}


def test_an_event_up_to_the_limit_ahead_is_accepted_and_one_second_more_is_not() -> None:
    limits = Limits(max_future_s=3600)
    events, errors = validate_events([{**EVENT, "timestamp": NOW_S + 3600}], frozenset({"APPSTART"}), limits, NOW_S)
    assert len(events) == 1 and errors == []
    events, errors = validate_events([{**EVENT, "timestamp": NOW_S + 3601}], frozenset({"APPSTART"}), limits, NOW_S)
    assert events == [] and [(e.index, e.field, e.rule) for e in errors] == [(0, "timestamp", "future")]
    assert "3600 s after the time it was received" in errors[0].message


def test_old_events_are_fine() -> None:
    events, errors = validate_events([{**EVENT, "timestamp": 1365772427}], frozenset({"APPSTART"}), Limits(), NOW_S)
    assert len(events) == 1 and errors == []


def test_a_join_record_starting_too_far_ahead_is_ignored_with_a_reason() -> None:
    ok = validate_join_record({**RECORD, "StartDate": "2023-11-14T22:14:00Z"}, NOW_S * 1000, 60)
    assert not isinstance(ok, Rejection)
    late = validate_join_record({**RECORD, "StartDate": "2023-11-14T22:15:00Z"}, NOW_S * 1000, 60)
    assert isinstance(late, Rejection) and late.rule == "StartDate:future"
