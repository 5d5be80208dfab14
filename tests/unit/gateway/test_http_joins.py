"""POST /api/JoinEvents through the Falcon app with a fake publisher (SPEC §1.2)."""

from __future__ import annotations

import json
import uuid

import pytest

from eventpipe.codec import DEAD_LETTER, JOIN_RECORD

from .helpers import KEY, OTHER_KEY, seed_join_body

JSON_CT = {"Content-Type": "application/json"}
C = "0f8fad5b-d9cb-469f-a165-70867728950e"
T = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def post(client, body, path="/api/JoinEvents"):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return client.simulate_post(path, body=body, headers=JSON_CT)


def request(records, key=KEY) -> dict:
    return {"Token": {"SecretKey": key}, "Data": records}


def test_the_seed_example_works_exactly_as_written(client, publisher) -> None:
    event_id, component, type_id = (str(uuid.uuid4()).upper() for _ in range(3))
    result = post(client, seed_join_body(KEY, [event_id, component, type_id]))
    assert result.status_code == 200
    assert result.json == {"Data": "", "Code": 10}
    (message,) = publisher.messages
    assert message.topic == "t.joins"
    record = JOIN_RECORD.decode(message.value)
    assert (record["event_id"], record["component_id"], record["type_id"]) == (
        event_id.lower(), component.lower(), type_id.lower())
    assert record["join_key"] == 45648117245 and record["join_interval"] == 600.0
    assert record["importance"] == "Alarm" and record["count"] == 1
    assert record["message"] == "Event message" and record["version"] == "1.0.0.0"
    assert int(record["start_date"].timestamp() * 1000) == 1462058743511
    assert record["account_id"] == "acme" and record["source"] == "http"
    assert json.loads(message.key) == ["acme", component.lower(), type_id.lower()]


def test_the_seed_with_its_placeholders_is_code_10_and_dead_lettered(client, publisher) -> None:
    result = post(client, seed_join_body(KEY, []))  # EventId etc. stay "XXXXXXXX-…": not GUIDs
    assert result.json["Code"] == 10
    (message,) = publisher.messages
    assert message.topic == "t.deadletter"
    letter = DEAD_LETTER.decode(message.value)
    assert "EventId" in letter["reason"] and letter["account_id"] == "acme" and letter["source"] == "http"
    assert json.loads(letter["payload"])["JoinKey"] == 45648117245


def test_invalid_records_are_ignored_and_the_valid_ones_published(client, publisher) -> None:
    records = [{"ComponentId": C, "TypeId": T}, {"ComponentId": "bad", "TypeId": T}, "junk",
               {"ComponentId": C, "TypeId": T, "Count": 4}]
    result = post(client, request(records))
    assert result.json["Code"] == 10
    topics = [m.topic for m in publisher.messages]
    assert topics.count("t.joins") == 2 and topics.count("t.deadletter") == 2
    reasons = [DEAD_LETTER.decode(m.value)["reason"] for m in publisher.messages if m.topic == "t.deadletter"]
    assert reasons[0].startswith("JoinEvents record 1: ComponentId") and reasons[1].startswith("JoinEvents record 2")


def test_ignored_records_are_counted(client, metrics) -> None:
    post(client, request([{"ComponentId": "bad", "TypeId": T}, {"TypeId": T}]))
    assert metrics.registry.get_sample_value("eventpipe_gateway_events_rejected_total",
                                             {"api": "joins", "reason": "ComponentId:guid"}) == 1
    assert metrics.registry.get_sample_value("eventpipe_gateway_events_rejected_total",
                                             {"api": "joins", "reason": "ComponentId:required"}) == 1


@pytest.mark.parametrize("path", ["/api/joinevents", "/api/JOINEVENTS", "/Api/JoinEvents", "/API/joinEvents/"])
def test_the_action_is_case_insensitive(client, publisher, path) -> None:
    assert post(client, request([{"ComponentId": C, "TypeId": T}]), path).json["Code"] == 10
    assert len(publisher.messages) == 1


@pytest.mark.parametrize("body, code, http, words", [
    (request([]), 10, 200, ""),
    ({"Token": {"SecretKey": KEY}, "Data": [{"ComponentId": C, "TypeId": T}]}, 10, 200, ""),
    ({"token": {"secretkey": KEY}, "data": []}, 10, 200, ""),
    ("", 101, 200, "empty"),
    ("   ", 101, 200, "empty"),
    ("{not json", 101, 200, "JSON"),
    (b"\xff\xfe", 101, 200, "UTF-8"),
    ("[1,2]", 101, 200, "object"),
    ("[" * 100000, 101, 200, "JSON"),
    ({"Data": []}, 1140, 200, "Token"),
    ({"Token": {}, "Data": []}, 1140, 200, "SecretKey"),
    ({"Token": "abc", "Data": []}, 1140, 200, "Token"),
    ({"Token": {"SecretKey": KEY}}, 1140, 200, "Data"),
    ({"Token": {"SecretKey": KEY}, "Data": {"a": 1}}, 1140, 200, "Data"),
    ({"Token": {"SecretKey": "wrong"}, "Data": []}, 1002, 200, "key"),
    ({"Token": {"SecretKey": 42}, "Data": []}, 1002, 200, "key"),
])
def test_request_level_codes(client, publisher, body, code, http, words) -> None:
    result = post(client, body)
    assert result.status_code == http
    assert result.json["Code"] == code
    assert words.lower() in result.json.get("ErrorMessage", "").lower()


@pytest.mark.parametrize("action", ["SendMetric", "SendLogs", "GetLogConfig", "GetOrCreateUnitTest", "GetEvents"])
def test_other_actions_answer_code_100(client, publisher, action) -> None:
    result = post(client, request([]), f"/api/{action}")
    assert result.status_code == 200 and result.json["Code"] == 100
    assert publisher.messages == []


def test_kafka_unavailable_is_503_code_1190(client, publisher) -> None:
    publisher.fail = True
    result = post(client, request([{"ComponentId": C, "TypeId": T}]))
    assert result.status_code == 503 and result.json["Code"] == 1190
    assert int(result.headers["Retry-After"]) >= 1


def test_too_many_records_is_413(gw_settings, keystore, publisher) -> None:
    import dataclasses

    import falcon.testing

    from ingest_gateway.app import create_app

    client = falcon.testing.TestClient(create_app(dataclasses.replace(gw_settings, max_events=2), keystore, publisher))
    result = post(client, request([{"ComponentId": C, "TypeId": T}] * 3))
    assert result.status_code == 413 and result.json["Code"] == 101


def test_record_ids_are_deterministic_and_tenant_scoped(client, publisher) -> None:
    body = request([{"ComponentId": C, "TypeId": T}] * 2)
    post(client, body)
    post(client, body)
    post(client, request([{"ComponentId": C, "TypeId": T, "AccountId": "acme"}], key=OTHER_KEY))
    ids = [JOIN_RECORD.decode(m.value)["record_id"] for m in publisher.messages]
    assert ids[:2] == ids[2:4] and ids[0] != ids[1]
    assert JOIN_RECORD.decode(publisher.messages[4].value)["account_id"] == "globex"
