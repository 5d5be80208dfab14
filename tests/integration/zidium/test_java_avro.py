"""Java direct producers and readers (SPEC §2): Apache Avro's own BinaryMessageEncoder + kafka-clients 4.3.1 write
events and join records that become the same rows as the same input over HTTP; BinaryMessageDecoder reads every
record the gateway wrote, on every topic."""

from __future__ import annotations

import json
import time
import uuid

from deploy.migrate import client as clickhouse
from tests.integration.gateway.helpers import consume, request

from . import java_build
from .conftest import Stack, wait_rows

JSON = {"Content-Type": "application/json"}
START_MS = (int(time.time()) - 600) * 1000  # recent: well inside the watermark rules


def post(stack: Stack, path: str, body: object, headers: dict | None = None) -> dict:
    status, text = request(stack.url + path, json.dumps(body).encode(), headers or JSON)
    assert status == 200, text
    return json.loads(text)


def test_java_avro_producers_and_http_give_the_same_rows(stack: Stack, java_classpath: str) -> None:
    for worker in ("events", "sessions", "joins"):
        stack.workers.start(worker)
    java_session, http_session = "java" + uuid.uuid4().hex[:8], "http" + uuid.uuid4().hex[:8]
    java_component, http_component, type_id = (str(uuid.uuid4()) for _ in range(3))
    run = java_build.run(java_classpath, "AvroInterop", "produce", stack.settings.kafka_bootstrap,
                         str(java_build.schema_dir()), stack.settings.topic_prefix, "demo", java_session,
                         java_component, type_id, str(START_MS))
    assert run.returncode == 0, run.stderr[-3000:]

    start_s = START_MS // 1000
    events = [{"action": action, "type": "APPSTART", "timestamp": start_s + 100 * i, "session": http_session,
               "entities": [{"key": "app", "value": "BigBrother"}]} for i, action in enumerate(("START", "END"))]
    assert post(stack, "/v3/events", events, {**JSON, "X-Api-Key": stack.key}) == {"APIVersion": 3, "result": 1}
    joins = [{"ComponentId": http_component, "TypeId": type_id, "JoinKey": 42, "JoinInterval": 600,
              "Importance": "Alarm", "Count": 1, "Message": f"java join {i}", "Version": "1.0.0.0",
              "StartDate": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start_s + 60 * i))} for i in range(2)]
    assert post(stack, "/api/JoinEvents", {"Token": {"SecretKey": stack.key}, "Data": joins})["Code"] == 10

    ch = clickhouse(stack.settings, stack.settings.clickhouse_database)
    sessions = wait_rows(ch, "SELECT session, status, start_time, end_time, duration_s, update_count "
                             "FROM sessions_final WHERE session IN %(s)s AND status = 'closed' ORDER BY session",
                         {"s": (java_session, http_session)}, 2)
    assert len(sessions) == 2 and sessions[0][1:] == sessions[1][1:], sessions
    events_rows = wait_rows(ch, "SELECT session, action, type, event_time, entities.key, entities.value, source "
                                "FROM events_final WHERE session IN %(s)s ORDER BY session, event_time",
                            {"s": (java_session, http_session)}, 4)
    http_rows, java_rows = events_rows[:2], events_rows[2:]
    assert [r[1:6] for r in java_rows] == [r[1:6] for r in http_rows], events_rows
    assert {r[6] for r in java_rows} == {"kafka"} and {r[6] for r in http_rows} == {"http"}
    joined = wait_rows(ch, "SELECT component_id, importance, join_key, start_time, end_time, count, message, "
                           "version, records FROM joined_events_final WHERE component_id IN %(c)s",
                       {"c": (java_component, http_component)}, 2, until=lambda rows: all(r[5] == 2 for r in rows))
    assert len(joined) == 2 and joined[0][1:] == joined[1][1:], joined


def test_avro_binary_message_decoder_reads_every_record_the_gateway_wrote(stack: Stack, java_classpath: str) -> None:
    key, s = stack.key, stack.settings
    post(stack, "/v3/events", [{"action": "START", "type": "APPSTART", "timestamp": START_MS // 1000,
                                "entities": [{"key": "n", "value": [1, {"a": None}]}]}], {**JSON, "X-Api-Key": key})
    post(stack, "/api/JoinEvents", {"Token": {"SecretKey": key}, "Data": [
        {"ComponentId": str(uuid.uuid4()), "TypeId": str(uuid.uuid4())}, {"ComponentId": "not a guid"}]})
    root = post(stack, "/api/GetRootComponent", {"Token": {"SecretKey": key}})["Data"]["Id"]
    child = post(stack, "/api/GetOrAddComponent", {"Token": {"SecretKey": key}, "Data": {
        "ParentComponentId": root, "SystemName": "svc", "TypeId": str(uuid.uuid4())}})["Data"]["Id"]
    answer = post(stack, "/api/SendEvent", {"Token": {"SecretKey": key}, "Data": {
        "ComponentId": child, "TypeSystemName": "Boom", "Category": "ApplicationError",
        "Properties": [{"Name": "Stack", "Value": "at x", "Type": "String"}]}})
    assert answer["Code"] == 10
    topics = [s.topic_events, s.topic_joins, s.topic_deadletter, s.topic_components]
    expected = {s.topic_events: 1, s.topic_joins: 2, s.topic_deadletter: 1, s.topic_components: 2}
    assert {t: len(consume(s, t, n)) for t, n in expected.items()} == expected  # and nothing more

    run = java_build.run(java_classpath, "AvroInterop", "decode", s.kafka_bootstrap, str(java_build.schema_dir()),
                         *topics)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    decoded = [line.split(" ", 4) for line in run.stdout.splitlines() if line.startswith("decoded ")]
    assert {t: sum(1 for d in decoded if d[1] == t) for t in topics} == expected
    text = run.stdout
    assert answer["Data"]["EventId"] in text and '"type_system_name": "Boom"' in text and child in text
    assert '"value": "[1,{\\"a\\":null}]"' in text  # an entity value's JSON text, byte for byte
