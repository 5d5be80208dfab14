"""Two devices sharing one API key send the same sessionless event: two rows in ``events_final``, and a retry
of a batch adds none (SPEC §2, issue 13). Real gateway app → real Kafka → real events sink → ClickHouse."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.migrate import client
from eventpipe.settings import Settings
from tests.integration.gateway.helpers import make_gateway

from .conftest import Workers, wait_until

DEVICE_EVENT = {"action": "START", "type": "APPSTART", "timestamp": 1700000300,
                "entities": [{"key": "m", "value": "x"}]}


def test_identical_sessionless_events_of_two_devices_stay_two(isolated_settings: Settings, workers: Workers,
                                                              tmp_path: Path) -> None:
    gw = make_gateway(isolated_settings, tmp_path)
    db = client(isolated_settings, isolated_settings.clickhouse_database)

    def post(batch: list[dict]) -> None:
        result = gw.client.simulate_post("/v3/events", body=json.dumps(batch),
                                         headers={"Content-Type": "application/json", "X-Api-Key": gw.key})
        assert result.status_code == 200, result.text

    def count() -> int:
        return db.execute("SELECT count() FROM events_final WHERE toUnixTimestamp(event_time) = 1700000300")[0][0]

    try:
        workers.start("events")
        post([DEVICE_EVENT])                                                        # device 1
        post([{**DEVICE_EVENT, "entities": [{"key": "m", "value": "x"}]},          # device 2, its own batch
              {"action": "UPDATE", "type": "APPSTART", "timestamp": 1700000301, "entities": []}])
        wait_until(lambda: count() == 2, what="both devices' events in events_final", workers=workers)
        post([DEVICE_EVENT])                                                        # device 1 retries
        post([{"entities": [{"value": "x", "key": "m"}], "timestamp": 1700000300,  # …spaced and ordered otherwise
               "type": "APPSTART", "action": "START"}])
        marker = {"action": "START", "type": "APPSTART", "timestamp": 1700000400, "entities": [],
                  "id": "marker-after-the-retries"}
        post([marker])  # once the marker is in, the retries before it (same partition) have been consumed
        wait_until(lambda: db.execute("SELECT count() FROM events_final WHERE event_id = 'marker-after-the-retries'")
                   == [(1,)], what="the marker event", workers=workers)
        assert count() == 2
        assert db.execute("SELECT count() FROM events WHERE toUnixTimestamp(event_time) = 1700000300")[0][0] >= 2
    finally:
        gw.publisher.close()
