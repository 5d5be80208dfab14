"""Deterministic ids, Kafka keys and the Avro records (SPEC §2)."""

from __future__ import annotations

import json

from eventpipe.codec import DEAD_LETTER, EVENT, JOIN_RECORD
from ingest_gateway.records import (DEAD_LETTER_PAYLOAD_MAX, dead_letter, derive_id, event_ids, event_key,
                                    event_record, join_key, join_record)
from ingest_gateway.validation import Limits, validate_events, validate_join_record

from .helpers import event

TYPES = frozenset({"APPSTART"})


def valid(*raws):
    events, errors = validate_events(list(raws), TYPES, Limits())
    assert not errors
    return events


def test_ids_are_deterministic_and_distinguish_identical_events() -> None:
    batch = valid(event(), event(), event(timestamp=1365772428), event())
    ids = event_ids("acme", batch)
    assert ids == event_ids("acme", valid(event(), event(), event(timestamp=1365772428), event()))
    assert len(set(ids)) == 4


def test_ids_depend_on_the_account() -> None:
    assert event_ids("acme", valid(event())) != event_ids("globex", valid(event()))


def test_ids_do_not_depend_on_unrelated_events_in_the_batch() -> None:
    alone = event_ids("acme", valid(event()))
    mixed = event_ids("acme", valid(event(timestamp=1), event()))
    assert mixed[1] == alone[0]


def test_a_client_id_is_the_event_id() -> None:
    assert event_ids("acme", valid(event(id="mine-1"), event())) [0] == "mine-1"


def test_the_client_id_does_not_change_derived_ids_of_others() -> None:
    assert event_ids("acme", valid(event(id="x"), event()))[1] == event_ids("acme", valid(event()))[0]


def test_derived_ids_look_like_uuids() -> None:
    value = derive_id("event", "acme", "[]", 0)
    assert len(value) == 36 and value == value.lower() and value.count("-") == 4


def test_event_keys() -> None:
    with_session, without = valid(event(), event(session=...))
    assert json.loads(event_key("acme", with_session)) == ["acme", "8nc92io9q", "APPSTART"]
    assert json.loads(event_key("acme", without)) == ["acme", "APPSTART"]


def test_event_record_round_trips_through_the_codec() -> None:
    (ev,) = valid(event(entities=[{"key": "n", "value": 1.25}, {"key": "o", "value": {"x": [None]}}]))
    record = event_record("acme", "id-1", ev, 1_700_000_000_123)
    decoded = EVENT.decode(EVENT.encode(record))
    assert decoded["account_id"] == "acme" and decoded["source"] == "http"
    assert [json.loads(e["value"]) for e in decoded["entities"]] == [1.25, {"x": [None]}]
    assert int(decoded["received_at"].timestamp() * 1000) == 1_700_000_000_123


def test_join_record_round_trips_through_the_codec() -> None:
    fields = validate_join_record({"ComponentId": "0F8FAD5B-D9CB-469F-A165-70867728950E",
                                   "TypeId": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "Version": "1.0"}, 1_000)
    decoded = JOIN_RECORD.decode(JOIN_RECORD.encode(join_record("acme", "r-1", fields, 2_000)))
    assert decoded["component_id"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert decoded["importance"] == "Unknown" and decoded["count"] == 1 and decoded["version"] == "1.0"
    assert json.loads(join_key("acme", fields)) == ["acme", fields.component_id, fields.type_id]


def test_dead_letter_keeps_the_record_as_json_and_cuts_huge_ones() -> None:
    raw = {"ComponentId": "nope", "Message": "ü"}
    decoded = DEAD_LETTER.decode(DEAD_LETTER.encode(dead_letter("acme", "ComponentId is not a GUID", raw, 5)))
    assert json.loads(decoded["payload"]) == raw and decoded["account_id"] == "acme" and decoded["topic"] is None
    huge = dead_letter("acme", "too big", {"Message": "m" * (2 * DEAD_LETTER_PAYLOAD_MAX)}, 5)
    assert len(huge["payload"]) == DEAD_LETTER_PAYLOAD_MAX and "cut" in huge["reason"]
    odd = dead_letter("acme", "surrogate", {"Message": "\ud800"}, 5)
    DEAD_LETTER.encode(odd)  # escaped, so it still encodes as UTF-8
    assert json.loads(odd["payload"]) == {"Message": "\ud800"}


def test_derived_ids_are_version_5_uuids() -> None:
    import uuid

    value = derive_id("event", "acme", "x", 3)
    parsed = uuid.UUID(value)
    assert str(parsed) == value and parsed.version == 5 and parsed.variant == uuid.RFC_4122


def test_canonical_content_cannot_be_forged_by_separators() -> None:
    a, b = valid(event(entities=[{"key": "a|1:b", "value": "c"}]), event(entities=[{"key": "a", "value": "b|1:c"}]))
    assert event_ids("acme", [a]) != event_ids("acme", [b])


def test_the_cached_partitioner_chooses_like_kafka_pythons_default() -> None:
    from kafka.partitioner.default import DefaultPartitioner

    from ingest_gateway.publisher_kafka_python import _cached_partitioner

    class Cluster:
        def topics(self):
            return {"t"}

        def partitions_for_topic(self, topic):
            return {0, 1, 2, 3, 4, 5}

        def available_partitions_for_topic(self, topic):
            return {0, 1, 2, 3, 4, 5}

    cached, default = _cached_partitioner(), DefaultPartitioner()
    for i in range(300):
        key = f'["acme","session-{i}","APPSTART"]'.encode()
        for _ in range(2):
            assert cached.partition("t", None, key, None, None, Cluster()) == \
                default.partition("t", None, key, None, None, Cluster())
