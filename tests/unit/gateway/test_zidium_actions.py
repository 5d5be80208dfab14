"""The Zidium actions besides JoinEvents through the Falcon app, with a fake publisher (SPEC §1.2)."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid

import pytest

from eventpipe.codec import COMPONENT, JOIN_RECORD
from ingest_gateway.zidium.components import child_id, root_id
from ingest_gateway.zidium.send_event import event_type_id, zidium_join_key
from ingest_gateway.zidium.wire import format_date

from .helpers import KEY, OTHER_KEY

OTHERS = "685678f9-d778-45bd-8ad2-d11c80fdccad"
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def call(client, action: str, data=None, key: str = KEY, token: dict | None = None, raw: str | None = None):
    body = raw if raw is not None else json.dumps(
        {"Token": token if token is not None else {"Account": "demo", "SecretKey": key},
         **({} if data is None else {"Data": data})})
    return client.simulate_post(f"/api/{action}", body=body, headers={"Content-Type": "application/json"})


def dates_in(node):
    """Every CreatedDate/Date value of an answer (the Java client fails a whole answer on a bad one)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("Date"):
                yield value
            else:
                yield from dates_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from dates_in(item)


def test_root_then_child_component_have_derived_ids_and_are_published(client, publisher) -> None:
    root = call(client, "GetRootComponent")
    assert root.status_code == 200 and root.json["Code"] == 10
    assert root.json["Data"]["Id"] == root_id("acme") and root.json["Data"]["ParentId"] is None
    assert root.json["Data"]["SystemName"] == "Root" and root.json["Data"]["Type"]["IsSystem"] is True
    child = call(client, "GetOrAddComponent", {"ParentComponentId": root.json["Data"]["Id"], "SystemName": "billing",
                                                "DisplayName": "Billing", "TypeId": OTHERS, "Version": "1.2"})
    data = child.json["Data"]
    assert child.json["Code"] == 10 and data["Id"] == child_id("acme", root_id("acme"), "billing")
    assert (data["ParentId"], data["DisplayName"], data["Version"]) == (root_id("acme"), "Billing", "1.2")
    records = [COMPONENT.decode(m.value) for m in publisher.messages]
    assert [(r["component_id"], r["operation"], r["parent_id"]) for r in records] == [
        (root_id("acme"), "add", None), (data["Id"], "add", root_id("acme"))]
    assert all(m.topic == "t.components" for m in publisher.messages)
    for answer in (root.json, child.json):
        assert all(DATE.match(d) and len(d) == 24 for d in dates_in(answer))


def test_get_or_add_is_idempotent_and_case_insensitive_like_zidium(client, publisher) -> None:
    first = call(client, "GetOrAddComponent", {"SystemName": "Billing", "TypeId": OTHERS, "DisplayName": "One"})
    again = call(client, "GetOrAddComponent", {"SystemName": "billing", "TypeId": OTHERS, "DisplayName": "Two"})
    assert first.json["Data"]["Id"] == again.json["Data"]["Id"]
    assert again.json["Data"]["DisplayName"] == "One"  # the first add wins, as in Zidium
    assert len(publisher.messages) == 1  # this process knew it: nothing to publish again
    other = call(client, "GetOrAddComponent", {"SystemName": "Billing", "TypeId": OTHERS}, key=OTHER_KEY)
    assert other.json["Data"]["Id"] != first.json["Data"]["Id"]  # another account, another component


def test_get_component_by_id_and_update(client, publisher) -> None:
    cid = call(client, "GetOrAddComponent", {"SystemName": "db", "TypeId": OTHERS}).json["Data"]["Id"]
    found = call(client, "GetComponentById", {"ComponentId": cid.upper()})
    assert found.json["Code"] == 10 and found.json["Data"]["SystemName"] == "db"
    assert call(client, "GetComponentById", {"ComponentId": root_id("acme")}).json["Data"]["SystemName"] == "Root"
    unknown = call(client, "GetComponentById", {"ComponentId": str(uuid.uuid4())})
    assert unknown.json["Code"] == 1100
    updated = call(client, "UpdateComponent", {"Id": cid, "DisplayName": "Main DB", "Version": "2.0",
                                               "Properties": [{"Name": "host", "Value": "db1", "Type": "String"}]})
    assert updated.json["Code"] == 10
    assert (updated.json["Data"]["DisplayName"], updated.json["Data"]["Version"]) == ("Main DB", "2.0")
    assert updated.json["Data"]["Properties"] == [{"Name": "host", "Value": "db1", "Type": "String"}]
    last = COMPONENT.decode(publisher.messages[-1].value)
    assert last["operation"] == "update" and last["display_name"] == "Main DB"
    assert call(client, "UpdateComponent", {"Id": str(uuid.uuid4())}).json["Code"] == 1100


def error_event(component: str, **overrides) -> dict:
    base = {"ComponentId": component, "TypeSystemName": "java.lang.IllegalStateException in app.Main.run",
            "TypeDisplayName": "IllegalStateException in Main.run", "Category": "ApplicationError",
            "Message": "card declined", "StartDate": "2026-11-23T10:15:30.123Z", "Count": 0, "Importance": "Alarm",
            "Properties": [{"Name": "Stack", "Value": "at app.Main.run(Main.java:7)", "Type": "String"},
                           {"Name": "LineNumber", "Value": "7", "Type": "String"}]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def test_send_event_is_a_join_record_derived_as_zidium_derives_it(client, publisher) -> None:
    component = str(uuid.uuid4())
    answer = call(client, "SendEvent", error_event(component))
    assert answer.status_code == 200 and answer.json["Code"] == 10
    (message,) = publisher.messages
    assert message.topic == "t.joins"
    record = JOIN_RECORD.decode(message.value)
    assert answer.json["Data"] == {"EventId": record["event_id"], "EventTypeId": record["type_id"]}
    assert record["type_id"] == event_type_id("acme", "ApplicationError",
                                              "java.lang.IllegalStateException in app.Main.run")
    assert record["join_key"] == zidium_join_key("java.lang.IllegalStateException in app.Main.run",
                                                 "at app.Main.run(Main.java:7)")
    assert record["join_interval"] == 86400.0 and record["count"] == 1 and record["importance"] == "Alarm"
    assert record["category"] == "ApplicationError" and record["message"] == "card declined"
    assert [(p["name"], p["value"], p["type"]) for p in record["properties"]] == [
        ("Stack", "at app.Main.run(Main.java:7)", "String"), ("LineNumber", "7", "String")]


def test_send_event_defaults_of_a_component_event(client, publisher) -> None:
    answer = call(client, "SendEvent", {"ComponentId": str(uuid.uuid4()), "TypeDisplayName": "Export finished",
                                        "Message": "done"})
    assert answer.json["Code"] == 10
    record = JOIN_RECORD.decode(publisher.messages[0].value)
    assert (record["category"], record["join_key"], record["join_interval"], record["importance"]) == (
        "ComponentEvent", 0, 0.0, "Unknown")
    assert record["type_system_name"] == record["type_display_name"] == "Export finished"
    assert abs(record["start_date"].timestamp() - time.time()) < 60


def test_a_retried_send_event_gets_the_same_ids(client, publisher) -> None:
    body = error_event(str(uuid.uuid4()))
    first, second = call(client, "SendEvent", body), call(client, "SendEvent", body)
    assert first.json["Data"] == second.json["Data"]
    a, b = (JOIN_RECORD.decode(m.value) for m in publisher.messages)
    assert a["record_id"] == b["record_id"]


def test_zidium_join_key_is_md5_halves_xored() -> None:
    digest = hashlib.md5(b"T:S").digest()
    expected = int.from_bytes(digest[:8], "little", signed=True) ^ int.from_bytes(digest[8:], "little", signed=True)
    assert zidium_join_key("T", "S") == expected
    assert zidium_join_key("T", None) == zidium_join_key("T", "")  # string.Join writes null as ""


@pytest.mark.parametrize("action,data,code,words", [
    ("SendEvent", {"TypeSystemName": "x"}, 1140, "Data.ComponentId"),
    ("SendEvent", {"ComponentId": "not-a-guid", "TypeSystemName": "x"}, 1140, "ComponentId"),
    ("SendEvent", {"ComponentId": str(uuid.UUID(int=1))}, 1140, "TypeSystemName"),
    ("SendEvent", {"ComponentId": str(uuid.UUID(int=1)), "TypeSystemName": "x", "Category": "Metric"}, 1141,
     "Category"),
    ("SendEvent", {"ComponentId": str(uuid.UUID(int=1)), "TypeSystemName": "x", "StartDate": "2999-01-01T00:00:00Z"},
     1151, "StartDate"),
    ("SendEvent", {"ComponentId": str(uuid.UUID(int=1)), "TypeSystemName": "x", "Count": "many"}, 1141, "Count"),
    ("SendEvent", None, 1140, "Data"),
    ("GetOrAddComponent", {"TypeId": OTHERS}, 1140, "Data.SystemName"),
    ("GetOrAddComponent", {"SystemName": "x"}, 1140, "Data.TypeId"),
    ("GetOrAddComponent", {"SystemName": "x", "TypeId": OTHERS, "ParentComponentId": "nope"}, 1140,
     "ParentComponentId"),
    ("GetComponentById", {}, 1140, "Data.ComponentId"),
    ("GetComponentById", {"ComponentId": "12"}, 1140, "ComponentId"),
    ("UpdateComponent", {"DisplayName": "x"}, 1140, "Data.Id"),
    ("GetEcho", None, 1140, "Data"),
])
def test_bad_input_names_the_field_and_stores_nothing(client, publisher, action, data, code, words) -> None:
    answer = call(client, action, data)
    assert answer.status_code == 200 and answer.json["Code"] == code
    assert words.lower() in answer.json["ErrorMessage"].lower()
    assert publisher.messages == []


@pytest.mark.parametrize("action", ["SendEvent", "GetRootComponent", "GetOrAddComponent", "GetEcho"])
def test_request_level_codes_apply_to_every_action(client, publisher, action) -> None:
    assert call(client, action, {"Message": "x"}, key="wrong").json["Code"] == 1002
    assert call(client, action, raw="{not json").json["Code"] == 101
    assert call(client, action, raw="").json["Code"] == 101
    assert call(client, action, token={"Account": "demo"}).json["Code"] == 1140
    assert publisher.messages == []


def test_echo_and_server_time(client) -> None:
    assert call(client, "getecho", {"Message": "ping"}).json == {"Code": 10, "Data": "ping"}
    for answer in (call(client, "GetServerTime", raw=""), client.simulate_get("/api/GetServerTime")):
        assert answer.status_code == 200 and answer.json["Code"] == 10
        assert DATE.match(answer.json["Data"]["Date"])


def test_kafka_unavailable_is_503_code_1190_for_send_event(client, publisher) -> None:
    publisher.fail = True
    answer = call(client, "SendEvent", error_event(str(uuid.uuid4())))
    assert answer.status_code == 503 and answer.json["Code"] == 1190 and answer.headers["Retry-After"]


@pytest.mark.parametrize("ms,text", [(0, "1970-01-01T00:00:00.000Z"), (1462058743511, "2016-04-30T23:25:43.511Z"),
                                     (-5, "1970-01-01T00:00:00.000Z"), (10**15, "9999-12-31T23:59:59.999Z")])
def test_dates_are_always_24_characters(ms, text) -> None:
    assert format_date(ms) == text and len(text) == 24
