"""Event identity (SPEC §2): a retried batch gives the same ids, whatever its JSON looks like; the same
sessionless event in two different batches (two devices sharing an API key) gives two ids; events with a session
keep the plain derivation (account, canonical content, occurrence)."""

from __future__ import annotations

import json
import random
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from eventpipe.codec import EVENT
from ingest_gateway.records import derive_id, event_canonical, event_ids, with_occurrences
from ingest_gateway.validation import Limits, validate_events

from .helpers import KEY, event
from .test_properties import fresh, valid_events

TYPES = frozenset({"APPSTART"})
PROFILE = dict(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEVICE_EVENT = {"action": "START", "type": "APPSTART", "timestamp": 1700000300,
                "entities": [{"key": "m", "value": "x"}]}


def ids_of(raws: list[dict], account: str = "acme") -> list[str]:
    events, errors = validate_events(json.loads(json.dumps(raws)), TYPES, Limits())
    assert not errors
    return event_ids(account, events)


def canonical_multiset(raws: list[dict]) -> list[str]:
    events, _ = validate_events(json.loads(json.dumps(raws)), TYPES, Limits())
    return sorted(event_canonical(e) for e in events)


def reformatted(raws: list[dict], rng: random.Random) -> list[dict]:
    """The same batch as another client library would write it: members reordered, events in another order."""
    def shuffle(value):
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {k: shuffle(v) if k != "value" else v for k, v in items}  # an entity value is content as sent
        if isinstance(value, list):
            return [shuffle(v) for v in value]
        return value
    events = [shuffle(e) for e in raws]
    rng.shuffle(events)
    return events


def test_two_devices_sending_the_same_sessionless_event_get_two_ids() -> None:
    (device1,) = ids_of([DEVICE_EVENT])
    device2 = ids_of([DEVICE_EVENT, {**DEVICE_EVENT, "timestamp": 1700000301}])
    assert device1 != device2[0]
    assert ids_of([DEVICE_EVENT]) == [device1]  # the retry of device 1's batch


def test_events_with_a_session_keep_the_plain_derivation() -> None:
    raws = [event(), event(), event(timestamp=1), event(session=...), event(id="mine")]
    events, _ = validate_events(raws, TYPES, Limits())
    plain = [derive_id("event", "acme", text, n) for text, n in with_occurrences(
        event_canonical(e) for e in events if e.client_id is None)]
    ids = event_ids("acme", events)
    assert ids[:3] == plain[:3] and ids[4] == "mine"
    assert ids[3] != plain[3]  # the sessionless one folds in its batch
    assert ids_of([event(), event(session=...)])[0] == ids_of([event()])[0]


def test_a_client_id_always_wins_even_without_a_session() -> None:
    assert ids_of([event(session=..., id="device-7-42")]) == ["device-7-42"]


@hsettings(**PROFILE)
@given(st.lists(valid_events(), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_a_retried_batch_gets_the_same_ids_whatever_its_formatting(raws, rng) -> None:
    ids = ids_of(raws)
    assert len(set(ids)) == len(ids)
    # compared as multisets: the events were reordered, and identical events are interchangeable
    assert sorted(ids_of(reformatted(raws, rng))) == sorted(ids)


@hsettings(**PROFILE)
@given(st.lists(valid_events(), min_size=1, max_size=6), st.lists(valid_events(), min_size=1, max_size=6))
def test_the_same_sessionless_event_in_two_different_batches_gets_two_ids(batch_a, batch_b) -> None:
    lone = {"action": "START", "type": "APPSTART", "timestamp": 1700000000, "entities": []}
    a, b = [lone, *batch_a], [lone, *batch_b]
    if canonical_multiset(a) == canonical_multiset(b):
        b.append({**lone, "timestamp": 1})  # the two batches must differ somewhere
    assert ids_of(a)[0] != ids_of(b)[0]


def test_the_http_retry_of_a_batch_gives_the_same_ids_in_every_body_shape() -> None:
    batch = [DEVICE_EVENT, DEVICE_EVENT, {**DEVICE_EVENT, "session": "session-0001"}]
    bodies = [
        ({"Content-Type": "application/x-www-form-urlencoded"}, urlencode({"data": json.dumps(batch)})),
        ({"Content-Type": "application/json"}, json.dumps(batch, indent=2)),
        ({"Content-Type": "application/json"}, json.dumps({"data": [dict(reversed(e.items())) for e in batch]},
                                                          separators=(",", ":"))),
    ]
    seen = []
    for headers, body in bodies:
        client, publisher = fresh()
        result = client.simulate_post("/v3/events", body=body, headers={**headers, "X-Api-Key": KEY})
        assert result.status_code == 200, result.text
        seen.append([EVENT.decode(m.value)["event_id"] for m in publisher.batches[-1]])
    assert seen[0] == seen[1] == seen[2]
    assert len(set(seen[0])) == 3
