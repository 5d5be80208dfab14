"""Kafka away: 503 (v3 code 7 / Zidium 1190) with Retry-After within the publish timeout, never a hang; and
success again, by itself, once Kafka is back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from eventpipe.settings import Settings
from tests.unit.gateway.helpers import event

from .helpers import consume, make_gateway

TIMEOUT_S = 2.0
SLACK_S = 2.5  # test-side overhead on a loaded 2-core machine; a hang would be 60 s (kafka-python's default)


def post_v3(gw, events):
    return gw.client.simulate_post("/v3/events", body=json.dumps(events),
                                   headers={"Content-Type": "application/json", "X-Api-Key": gw.key})


def post_join(gw):
    body = {"Token": {"SecretKey": gw.key},
            "Data": [{"ComponentId": "0f8fad5b-d9cb-469f-a165-70867728950e",
                      "TypeId": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}]}
    return gw.client.simulate_post("/api/JoinEvents", body=json.dumps(body),
                                   headers={"Content-Type": "application/json"})


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_unreachable_kafka_is_503_within_the_timeout(infra: Settings, kafka_client: str, tmp_path: Path) -> None:
    gw = make_gateway(infra, tmp_path, kafka_bootstrap="127.0.0.1:1", publish_timeout_s=TIMEOUT_S,
                      kafka_client=kafka_client)
    try:
        for _ in range(3):
            result, took = timed(lambda: post_v3(gw, [event()]))
            assert result.status_code == 503 and result.json["error"]["code"] == 7
            assert int(result.headers["Retry-After"]) >= 1
            assert took < TIMEOUT_S + SLACK_S
        result, took = timed(lambda: post_join(gw))
        assert result.status_code == 503 and result.json["Code"] == 1190 and "Retry-After" in result.headers
        assert took < TIMEOUT_S + SLACK_S
        result, took = timed(lambda: gw.client.simulate_get("/readyz"))
        assert result.status_code == 503 and took < TIMEOUT_S + SLACK_S
        assert gw.client.simulate_get("/healthz").status_code == 200
    finally:
        gw.publisher.close()


def test_kafka_stopped_and_started_again(topics_settings: Settings, tmp_path: Path) -> None:
    """Takes the local broker down through deploy/ (as `make run` started it) and brings it back."""
    from deploy import kafka

    if not topics_settings.local_kafka or not kafka.is_running(topics_settings):
        pytest.skip("Kafka is not the local broker managed by deploy/kafka.py")
    gw = make_gateway(topics_settings, tmp_path, publish_timeout_s=TIMEOUT_S)
    try:
        assert post_v3(gw, [event(id="before")]).status_code == 200
        kafka.stop(topics_settings)
        try:
            for _ in range(2):
                result, took = timed(lambda: post_v3(gw, [event(id="during")]))
                assert result.status_code == 503 and result.json["error"]["code"] == 7
                assert took < TIMEOUT_S + SLACK_S
            result, took = timed(lambda: post_join(gw))
            assert result.status_code == 503 and result.json["Code"] == 1190 and took < TIMEOUT_S + SLACK_S
        finally:
            kafka.start(topics_settings)
        # The same process, the same publisher: it must recover by itself.
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            result, took = timed(lambda: post_v3(gw, [event(id="after")]))
            assert took < TIMEOUT_S + SLACK_S  # never a hang while it reconnects
            status = result.status_code
            if status == 200:
                break
            assert status == 503
            time.sleep(0.5)
        assert status == 200
        assert gw.client.simulate_get("/readyz").status_code == 200
        from eventpipe.codec import EVENT

        ids = {EVENT.decode(m.value)["event_id"] for m in consume(topics_settings, topics_settings.topic_events, 2)}
        assert {"before", "after"} <= ids  # "during" may or may not have landed: a 503 promises nothing either way
    finally:
        gw.publisher.close()
