"""What the gateway acknowledges is on Kafka: read it back and decode it with the shared codec."""

from __future__ import annotations

import json
import uuid

from eventpipe.codec import DEAD_LETTER, EVENT, JOIN_RECORD
from tests.unit.gateway.helpers import event, seed_join_body, seed_v3_form

from .helpers import Gateway, consume

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_the_v3_seed_is_acknowledged_and_on_kafka(gateway: Gateway) -> None:
    result = gateway.client.simulate_post("/v3/events", body=seed_v3_form(),
                                          headers={**FORM, "X-Api-Key": gateway.key})
    assert result.status_code == 200 and result.json == {"APIVersion": 3, "result": 1}
    messages = consume(gateway.settings, gateway.settings.topic_events, 2)
    assert len(messages) == 2
    assert len({(m.partition, m.key) for m in messages}) == 1  # one session: one key, one partition
    records = sorted((EVENT.decode(m.value) for m in messages), key=lambda r: r["timestamp"])
    assert [(r["action"], r["type"], r["timestamp"], r["session"]) for r in records] == [
        ("START", "APPSTART", 1365772427, "8nc92io9q"), ("END", "APPSTART", 1365772533, "8nc92io9q")]
    assert all(r["account_id"] == "acme" and r["source"] == "http" for r in records)
    assert records[0]["entities"] == [{"key": "app", "value": '"BigBrother"'},
                                      {"key": "package", "value": '"de.thues.bigbrother"'}]
    assert json.loads(messages[0].key) == ["acme", "8nc92io9q", "APPSTART"]


def test_the_join_seed_and_ignored_records_are_on_kafka(gateway: Gateway) -> None:
    event_id, component, type_id = (str(uuid.uuid4()) for _ in range(3))
    body = json.loads(seed_join_body(gateway.key, [event_id, component, type_id]))
    body["Data"].append({"ComponentId": "not-a-guid", "TypeId": type_id})
    result = gateway.client.simulate_post("/api/JoinEvents", body=json.dumps(body),
                                          headers={"Content-Type": "application/json"})
    assert result.status_code == 200 and result.json["Code"] == 10
    (joined,) = consume(gateway.settings, gateway.settings.topic_joins, 1)
    record = JOIN_RECORD.decode(joined.value)
    assert (record["event_id"], record["component_id"], record["type_id"]) == (event_id, component, type_id)
    assert record["join_key"] == 45648117245 and record["importance"] == "Alarm" and record["account_id"] == "acme"
    (dead,) = consume(gateway.settings, gateway.settings.topic_deadletter, 1)
    letter = DEAD_LETTER.decode(dead.value)
    assert "ComponentId" in letter["reason"] and json.loads(letter["payload"])["ComponentId"] == "not-a-guid"
    assert letter["source"] == "http" and letter["account_id"] == "acme"


def test_tenant_isolation_and_retry_safe_ids_on_kafka(gateway: Gateway) -> None:
    batch = json.dumps({"account_id": "globex", "data": [event(account_id="globex"), event()]})
    for _ in range(2):  # a client retrying the same batch
        r = gateway.client.simulate_post("/v3/events", body=batch,
                                         headers={"Content-Type": "application/json", "X-Api-Key": gateway.key})
        assert r.status_code == 200
    records = [EVENT.decode(m.value) for m in consume(gateway.settings, gateway.settings.topic_events, 4)]
    assert len(records) == 4
    assert {r["account_id"] for r in records} == {"acme"}
    ids = [r["event_id"] for r in records]
    assert len(set(ids)) == 2  # two distinct events, each published twice with the same id


def test_invalid_batches_publish_nothing(gateway: Gateway) -> None:
    r = gateway.client.simulate_post("/v3/events", body=json.dumps([event(), event(type="NOPE")]),
                                     headers={"Content-Type": "application/json", "X-Api-Key": gateway.key})
    assert r.status_code == 422
    assert consume(gateway.settings, gateway.settings.topic_events, 1, timeout_s=3) == []


def test_a_large_batch_is_acknowledged_as_a_whole(gateway: Gateway) -> None:
    batch = [event(session=f"session-{i % 50:04d}", timestamp=1365772427 + i) for i in range(2000)]
    r = gateway.client.simulate_post("/v3/events", body=json.dumps(batch),
                                     headers={"Content-Type": "application/json", "X-Api-Key": gateway.key})
    assert r.status_code == 200
    assert len(consume(gateway.settings, gateway.settings.topic_events, 2000)) == 2000


def test_readyz_with_kafka_up(gateway: Gateway) -> None:
    assert gateway.client.simulate_get("/readyz").status_code == 200


def java_partitions(gateway: Gateway, keys: list[bytes], partitions: int) -> list[int]:
    """What Apache Kafka's Java producer (kafka-clients, the broker's own jars) chooses for each key."""
    import subprocess
    from pathlib import Path

    from deploy import kafka

    source = Path(__file__).resolve().parents[2] / "java" / "JavaPartition.java"
    out = subprocess.run(["java", "-cp", str(kafka.libs(gateway.settings) / "*"), str(source), str(partitions)],
                         input=b"\n".join(keys) + b"\n", capture_output=True, check=True, timeout=120)
    return [int(line) for line in out.stdout.split()]


def test_keys_land_in_the_partition_the_java_client_chooses(gateway: Gateway) -> None:
    sessions = [f"device-{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(60)]
    batch = [event(session=s, id=f"id-{s}") for s in sessions] + [event(session=..., type="APPSTART", id="lone")]
    result = gateway.client.simulate_post("/v3/events", body=json.dumps(batch),
                                          headers={"Content-Type": "application/json", "X-Api-Key": gateway.key})
    assert result.status_code == 200, result.text
    messages = consume(gateway.settings, gateway.settings.topic_events, len(batch))
    assert len(messages) == len(batch)
    keys = [m.key for m in messages]
    expected = java_partitions(gateway, keys, gateway.settings.topic_partitions)
    assert [m.partition for m in messages] == expected
    assert len(set(expected)) == gateway.settings.topic_partitions  # the keys really spread: the check has teeth
