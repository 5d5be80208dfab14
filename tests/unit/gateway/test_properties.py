"""Hypothesis over both endpoints: whatever a client sends, the answer is one of the documented ones.

No 500, no stack trace, a body in the API's format; valid batches are published in full with every value
round-tripping exactly; invalid ones publish nothing (v3) or are dead-lettered (JoinEvents).
"""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlencode

import falcon.testing
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from eventpipe.codec import DEAD_LETTER, EVENT, JOIN_RECORD
from eventpipe.settings import Settings
from ingest_gateway.app import create_app
from ingest_gateway.keystore import KeyStore
from ingest_gateway.metrics import Metrics

from .fakes import FakePublisher
from .helpers import KEY

SETTINGS = dataclasses.replace(Settings.from_env({}), topic_prefix="p", max_body_bytes=64 * 1024, max_events=50,
                               max_entities=20, max_string_chars=2000, max_json_depth=8)
KEYSTORE = KeyStore.from_keys({KEY: "acme"})
METRICS = Metrics()
V3_STATUSES = {200: None, 400: 1, 401: 2, 413: 4, 415: 5, 422: 3}
PROFILE = dict(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def fresh() -> tuple[falcon.testing.TestClient, FakePublisher]:
    publisher = FakePublisher()
    return falcon.testing.TestClient(create_app(SETTINGS, KEYSTORE, publisher, METRICS)), publisher


@st.composite
def valid_events(draw) -> dict:
    action = draw(st.sampled_from(["START", "UPDATE", "END"]))
    ev = {"action": action, "type": "APPSTART", "timestamp": draw(st.integers(0, 1_700_000_000)),
          "entities": draw(st.lists(st.fixed_dictionaries({"key": st.text(min_size=1, max_size=20),
                                                           "value": json_values}), max_size=5))}
    if action == "END" or draw(st.booleans()):
        ev["session"] = draw(st.text(st.characters(codec="utf-8"), min_size=8, max_size=20))
    return ev


def utf8_clean(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_v3_answer(result) -> dict:
    assert result.status_code in V3_STATUSES, result.text
    body = result.json
    assert body["APIVersion"] == 3
    if result.status_code == 200:
        assert body == {"APIVersion": 3, "result": 1}
    else:
        assert body["result"] == 0 and body["error"]["code"] == V3_STATUSES[result.status_code]
        assert isinstance(body["error"]["message"], str) and "Traceback" not in result.text
    return body


@hsettings(**PROFILE)
@given(st.lists(valid_events(), min_size=1, max_size=8), st.sampled_from(["form", "json", "wrapped"]))
def test_valid_batches_are_published_whole_and_values_round_trip(events, shape) -> None:
    client, publisher = fresh()
    if shape == "form":
        result = client.simulate_post("/v3/events", body=urlencode({"data": json.dumps(events)}),
                                      headers={"Content-Type": "application/x-www-form-urlencoded", "X-Api-Key": KEY})
    else:
        body = events if shape == "json" else {"data": events}
        result = client.simulate_post("/v3/events", body=json.dumps(body),
                                      headers={"Content-Type": "application/json", "X-Api-Key": KEY})
    check_v3_answer(result)
    if not all(utf8_clean(e) for e in events):
        assert result.status_code == 422
        return
    assert result.status_code == 200, result.text
    records = [EVENT.decode(m.value) for m in publisher.messages]
    assert len(records) == len(events)
    for sent, got in zip(events, records):
        assert (got["action"], got["timestamp"], got.get("session")) == (sent["action"], sent["timestamp"],
                                                                        sent.get("session"))
        assert [(e["key"], json.loads(e["value"])) for e in got["entities"]] == \
            [(e["key"], e["value"]) for e in sent["entities"]]
    assert len({r["event_id"] for r in records}) == len(records)


@hsettings(**PROFILE)
@given(st.lists(st.one_of(valid_events(), json_values,
                          st.dictionaries(st.sampled_from(["action", "type", "timestamp", "session", "entities", "id"]),
                                          json_values)), min_size=0, max_size=8))
def test_any_json_batch_gets_a_documented_answer_and_is_all_or_nothing(batch) -> None:
    client, publisher = fresh()
    result = client.simulate_post("/v3/events", body=urlencode({"data": json.dumps(batch)}),
                                  headers={"Content-Type": "application/x-www-form-urlencoded", "X-Api-Key": KEY})
    body = check_v3_answer(result)
    if result.status_code == 200:
        assert len(publisher.messages) == len(batch)
    else:
        assert publisher.messages == []
        if result.status_code == 422:
            assert all(0 <= d["index"] < len(batch) for d in body["error"]["details"])


@hsettings(**PROFILE)
@given(st.binary(max_size=2000), st.sampled_from(["application/x-www-form-urlencoded", "application/json",
                                                  "multipart/form-data; boundary=b", "text/plain", None]),
       st.sampled_from([KEY, None, "wrong"]))
def test_arbitrary_bytes_never_break_v3(raw, content_type, key) -> None:
    client, publisher = fresh()
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if key:
        headers["X-Api-Key"] = key
    check_v3_answer(client.simulate_post("/v3/events", body=raw, headers=headers))


@hsettings(**PROFILE)
@given(st.text(max_size=300))
def test_arbitrary_data_text_never_breaks_v3(text) -> None:
    client, _ = fresh()
    check_v3_answer(client.simulate_post("/v3/events", body=urlencode({"data": text, "apikey": KEY}),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"}))


# --- JoinEvents ---------------------------------------------------------------------------------------------------

guids = st.uuids().map(str)
join_fields = st.fixed_dictionaries({"ComponentId": guids, "TypeId": guids}, optional={
    "EventId": guids | st.none(),
    "JoinKey": st.integers(-(2**63), 2**63 - 1),
    "StartDate": st.datetimes(max_value=__import__("datetime").datetime(2023, 1, 1), timezones=st.just(__import__("datetime").timezone.utc)).map(
        lambda d: d.isoformat().replace("+00:00", "Z")),
    "JoinInterval": st.floats(min_value=0, max_value=1e9),
    "Importance": st.sampled_from(["Success", "warning", "ALARM", "Unknown", 0, 50, 100, 150]),
    "Count": st.integers(-5, 2**40),
    "Message": st.text(st.characters(codec="utf-8"), max_size=100),
    "Version": st.text(st.characters(codec="utf-8"), max_size=20) | st.none(),
})
any_record = join_fields | json_values | st.dictionaries(
    st.sampled_from(["ComponentId", "TypeId", "EventId", "JoinKey", "StartDate", "JoinInterval", "Importance",
                     "Count", "Message", "Version"]), json_values)


@hsettings(**PROFILE)
@given(st.lists(any_record, max_size=10))
def test_every_join_record_is_published_or_dead_lettered(records) -> None:
    client, publisher = fresh()
    result = client.simulate_post("/api/JoinEvents", body=json.dumps({"Token": {"SecretKey": KEY}, "Data": records}),
                                  headers={"Content-Type": "application/json"})
    assert result.status_code == 200 and result.json == {"Data": "", "Code": 10}
    joins = [JOIN_RECORD.decode(m.value) for m in publisher.messages if m.topic == "p.joins"]
    letters = [DEAD_LETTER.decode(m.value) for m in publisher.messages if m.topic == "p.deadletter"]
    assert len(joins) + len(letters) == len(records)
    assert all(j["account_id"] == "acme" and j["count"] >= 1 for j in joins)
    assert all(letter["reason"] and letter["account_id"] == "acme" for letter in letters)


@hsettings(**PROFILE)
@given(st.lists(join_fields, min_size=1, max_size=10))
def test_valid_join_records_are_all_published(records) -> None:
    client, publisher = fresh()
    result = client.simulate_post("/api/JoinEvents", body=json.dumps({"Token": {"SecretKey": KEY}, "Data": records}),
                                  headers={"Content-Type": "application/json"})
    assert result.json["Code"] == 10
    assert [m.topic for m in publisher.messages] == ["p.joins"] * len(records)


@hsettings(**PROFILE)
@given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()),
       st.sampled_from(["JoinEvents", "joinevents", "Other"]))
def test_arbitrary_bodies_never_break_join_events(raw, action) -> None:
    client, publisher = fresh()
    result = client.simulate_post(f"/api/{action}", body=raw, headers={"Content-Type": "application/json"})
    assert result.status_code in (200, 413), result.text
    assert result.json["Code"] in (10, 100, 101, 1002, 1140)
    if action == "Other":
        assert result.json["Code"] == 100
