"""POST /v3/events through the Falcon app with a fake publisher: bodies, codes and what would be published."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from eventpipe.codec import EVENT

from .helpers import FORM, KEY, OTHER_KEY, event, seed_v3_form

JSON_CT = {"Content-Type": "application/json"}


def post(client, body, headers=None, key=KEY):
    h = dict(headers if headers is not None else FORM)
    if key is not None:
        h["X-Api-Key"] = key
    return client.simulate_post("/v3/events", body=body, headers=h)


def form(events) -> str:
    return urlencode({"data": json.dumps(events)})


def error_of(result) -> dict:
    body = result.json
    assert body["APIVersion"] == 3 and body["result"] == 0
    return body["error"]


def test_the_seed_example_works_exactly_as_written(client, publisher) -> None:
    result = post(client, seed_v3_form())
    assert result.status_code == 200
    assert result.text == '{"APIVersion":3,"result":1}'
    records = [EVENT.decode(m.value) for m in publisher.messages]
    assert [(r["action"], r["type"], r["timestamp"], r["session"]) for r in records] == [
        ("START", "APPSTART", 1365772427, "8nc92io9q"), ("END", "APPSTART", 1365772533, "8nc92io9q")]
    assert records[0]["entities"] == [{"key": "app", "value": '"BigBrother"'},
                                      {"key": "package", "value": '"de.thues.bigbrother"'}]
    assert all(r["account_id"] == "acme" and r["source"] == "http" for r in records)
    assert {m.topic for m in publisher.messages} == {"t.events"}
    assert publisher.messages[0].key == publisher.messages[1].key  # one session stays in one partition


@pytest.mark.parametrize("headers, body", [
    ({"Content-Type": "application/x-www-form-urlencoded", "X-Api-Key": KEY}, form([event()])),
    ({"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {KEY}"}, form([event()])),
    ({"Content-Type": "application/x-www-form-urlencoded"}, urlencode({"apikey": KEY, "data": json.dumps([event()])})),
    ({"Content-Type": "application/json", "X-Api-Key": KEY}, json.dumps([event()])),
    ({"Content-Type": "application/json; charset=utf-8", "X-Api-Key": KEY}, json.dumps({"data": [event()]})),
    ({"Content-Type": "application/json"}, json.dumps({"apikey": KEY, "data": [event()]})),
    ({"X-Api-Key": KEY}, json.dumps([event()])),                  # no content type: sniffed
    ({"X-Api-Key": KEY}, form([event()])),
])
def test_accepted_body_forms_and_credentials(client, publisher, headers, body) -> None:
    result = client.simulate_post("/v3/events", body=body, headers=headers)
    assert result.status_code == 200, result.text
    assert len(publisher.messages) == 1


def test_multipart(client, publisher) -> None:
    boundary = "xYzZY"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n{KEY}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{json.dumps([event()])}\r\n"
            f"--{boundary}--\r\n")
    result = client.simulate_post("/v3/events", body=body,
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert result.status_code == 200, result.text
    assert len(publisher.messages) == 1


@pytest.mark.parametrize("body, headers, what", [
    ("apikey=x", FORM, "no data"),
    ("", FORM, "no data"),
    ("data=", FORM, "JSON"),
    ("data=%7Bnot json", FORM, "JSON"),
    ("data=" + "%5B" * 5000, FORM, "JSON"),
    (form({"action": "START"}), FORM, "array"),
    (form("[]"), FORM, "array"),
    (form([]), FORM, "empty"),
    ("data=[NaN]", FORM, "JSON"),
    (b"data=%FF%FE", FORM, "UTF-8"),
    (b"data=\xff", FORM, "UTF-8"),
    ("{not json", JSON_CT, "JSON"),
    ('{"events": []}', JSON_CT, "no data"),
    ("[]", JSON_CT, "empty"),
    ('"hello"', JSON_CT, "array"),
    ("--x--", {"Content-Type": "multipart/form-data"}, "multipart"),
])
def test_code_1_bad_request(client, publisher, body, headers, what) -> None:
    result = post(client, body, headers)
    assert result.status_code == 400, result.text
    err = error_of(result)
    assert err["code"] == 1 and what.lower() in err["message"].lower()
    assert publisher.messages == []


@pytest.mark.parametrize("key, headers", [
    (None, FORM), ("wrong", FORM), ("", FORM), ("x" * 10_000, FORM),
])
def test_code_2_unauthorized(client, publisher, key, headers) -> None:
    result = post(client, form([event()]), headers, key=key)
    assert result.status_code == 401
    assert error_of(result)["code"] == 2
    assert publisher.messages == []


def test_bad_bearer_and_malformed_json_without_key_are_401(client) -> None:
    r = client.simulate_post("/v3/events", body="{", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = client.simulate_post("/v3/events", body=form([event()]), headers={**FORM, "Authorization": "Basic abc"})
    assert r.status_code == 401


def test_code_3_lists_every_invalid_event_and_accepts_nothing(client, publisher) -> None:
    batch = [event(), event(type="NOPE"), event(), event(timestamp=1365772427000, action="END", session=None)]
    result = post(client, form(batch))
    assert result.status_code == 422
    err = error_of(result)
    assert err["code"] == 3 and "nothing was accepted" in err["message"]
    assert [(d["index"], d["field"]) for d in err["details"]] == [(1, "type"), (3, "timestamp"), (3, "session")]
    assert all(d["message"] and d["rule"] for d in err["details"])
    assert publisher.messages == []


def test_code_4_body_over_the_limit(gw_settings, keystore, publisher) -> None:
    import dataclasses

    import falcon.testing

    from ingest_gateway.app import create_app

    small = dataclasses.replace(gw_settings, max_body_bytes=1000, max_events=2)
    client = falcon.testing.TestClient(create_app(small, keystore, publisher))
    result = post(client, form([event(entities=[{"key": "k", "value": "v" * 2000}])]))
    assert result.status_code == 413 and error_of(result)["code"] == 4
    result = post(client, form([event(entities=[])] * 3))
    assert result.status_code == 413 and error_of(result)["code"] == 4 and "limit is 2" in error_of(result)["message"]
    assert post(client, form([event(entities=[])] * 2)).status_code == 200


def test_code_4_declared_length_is_refused_before_reading(gw_settings, keystore, publisher) -> None:
    import dataclasses

    import falcon.testing

    from ingest_gateway.app import create_app

    client = falcon.testing.TestClient(create_app(dataclasses.replace(gw_settings, max_body_bytes=10), keystore,
                                                  publisher))
    result = client.simulate_post("/v3/events", body="x" * 11, headers={**FORM, "X-Api-Key": KEY})
    assert result.status_code == 413 and error_of(result)["code"] == 4


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "image/png"])
def test_code_5_unsupported_content_type(client, content_type) -> None:
    result = post(client, form([event()]), {"Content-Type": content_type})
    assert result.status_code == 415 and error_of(result)["code"] == 5


def test_code_7_kafka_unavailable(client, publisher) -> None:
    publisher.fail = True
    result = post(client, form([event()]))
    assert result.status_code == 503
    assert error_of(result)["code"] == 7
    assert int(result.headers["Retry-After"]) >= 1


def test_retried_batches_get_the_same_ids_and_duplicates_stay_distinct(client, publisher) -> None:
    batch = form([event(), event(), event(id="mine")])
    assert post(client, batch).status_code == 200
    assert post(client, batch).status_code == 200
    first, second = ([EVENT.decode(m.value)["event_id"] for m in b] for b in publisher.batches)
    assert first == second
    assert len(set(first)) == 3 and first[2] == "mine"


def test_the_account_comes_from_the_key_never_from_the_payload(client, publisher) -> None:
    assert post(client, form([event(account_id="globex")]), key=KEY).status_code == 200
    assert post(client, json.dumps({"account_id": "acme", "data": [event()]}), JSON_CT, key=OTHER_KEY).status_code \
        == 200
    accounts = [EVENT.decode(m.value)["account_id"] for m in publisher.messages]
    assert accounts == ["acme", "globex"]
    ids = [EVENT.decode(m.value)["event_id"] for m in publisher.messages]
    assert ids[0] != ids[1]  # same content, different tenants


def test_entity_values_round_trip_exactly(client, publisher) -> None:
    values = ["text", "", 0, -7, 2**64, 3.141592653589793, 1e-300, True, False, None, [], {}, [1, [2, {"a": None}]],
              {"z": 1, "a": 2}, "日本語 🎉", "aGVsbG8gd29ybGQ="]
    result = post(client, json.dumps([event(entities=[{"key": f"k{i}", "value": v} for i, v in enumerate(values)])]),
                  JSON_CT)
    assert result.status_code == 200
    (record,) = [EVENT.decode(m.value) for m in publisher.messages]
    assert [json.loads(e["value"]) for e in record["entities"]] == values
    assert list(json.loads(record["entities"][13]["value"])) == ["z", "a"]  # member order kept


def test_errors_never_leak_internals(client) -> None:
    deep: list = [1]
    for _ in range(40):
        deep = [deep]
    result = post(client, form([event(entities=[{"key": "k", "value": deep}])]))
    assert result.status_code == 422
    assert "Traceback" not in result.text


def test_an_event_too_big_for_one_kafka_record_is_refused(client, publisher) -> None:
    entities = [{"key": f"k{i}", "value": "v" * 60_000} for i in range(20)]  # each rule passes; 1.2 MB in total
    result = post(client, json.dumps([event(), event(entities=entities)]), JSON_CT)
    assert result.status_code == 422
    (detail,) = error_of(result)["details"]
    assert detail["index"] == 1 and detail["rule"] == "max_record_bytes"
    assert publisher.messages == []
