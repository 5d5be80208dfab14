"""The soak's pure parts: its request mix, and that the ids it expects are the ids the gateway gives."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import falcon.testing
import pytest

from bench import soak
from bench.harness import BenchConfig
from eventpipe.codec import EVENT
from eventpipe.contract import load_event_types
from eventpipe.settings import Settings
from ingest_gateway.app import create_app
from ingest_gateway.keystore import KeyStore

KEYS = {soak.ACCOUNT: "key-a", soak.OTHER_ACCOUNT: "key-b"}


@pytest.fixture
def traffic() -> soak.Traffic:
    return soak.Traffic(7, KEYS, load_event_types(Settings().event_types_file))


def test_the_mix_has_every_kind_in_its_share_and_is_the_same_for_a_seed() -> None:
    plan = soak.schedule(BenchConfig())
    assert abs(len(plan) - soak.REQUESTS) < 100
    counts = {k.name: 0 for k in soak.KINDS}
    for kind in plan:
        counts[kind.name] += 1
    assert all(counts.values()), counts
    share = 20 / sum(k.weight for k in soak.KINDS)  # v3 valid form's weight
    assert counts["v3 oversized, written whole"] == 20 and counts["v3 valid form"] == round(soak.REQUESTS * share)
    assert [k.name for k in soak.schedule(BenchConfig())] == [k.name for k in plan]
    assert [k.name for k in soak.schedule(BenchConfig(seed=1))] != [k.name for k in plan]
    assert 190 <= len(soak.schedule(BenchConfig(scale=0.002))) <= 210  # every kind at least once


def test_requests_are_reproducible(traffic: soak.Traffic) -> None:
    again = soak.Traffic(7, KEYS, traffic.types)
    again.now, again.run = traffic.now, traffic.run
    for i, kind in enumerate(soak.KINDS):
        assert traffic.request(kind, i) == again.request(kind, i), kind.name


@pytest.mark.parametrize("kind", [k for k in soak.KINDS if k.name.startswith("v3 valid")], ids=lambda k: k.name)
def test_the_ids_the_soak_expects_are_the_ids_the_gateway_publishes(traffic: soak.Traffic, kind: soak.Kind,
                                                                    tmp_path: Path) -> None:
    published = []

    class Keep:
        def publish(self, messages): published.extend(messages)
        def ready(self): return True
        def close(self): pass

    settings = dataclasses.replace(Settings.from_env({}), home=str(tmp_path), topic_prefix="t")
    app = create_app(settings, KeyStore.from_keys({v: k for k, v in KEYS.items()}), Keep())
    for i in range(20):
        req = traffic.request(kind, i)
        answer = falcon.testing.TestClient(app).simulate_post(req.path, body=req.body, headers=req.headers)
        assert answer.status_code == 200, answer.text
        records = [EVENT.decode(m.value) for m in published[-len(req.ids):]]
        assert [r["event_id"] for r in records] == req.ids
        assert {r["account_id"] for r in records} == {soak.ACCOUNT}


def test_hostile_kinds_go_to_the_other_account_and_expect_no_ids(traffic: soak.Traffic) -> None:
    for kind in soak.KINDS:
        req = traffic.request(kind, 3)
        if kind.name in ("v3 mutated", "v3 truncated", "v3 upload cut short"):
            assert req.headers["X-Api-Key"] == KEYS[soak.OTHER_ACCOUNT] and not req.ids
        if "bomb" in kind.name:
            assert len(req.body) < 100_000 and len(gzip.decompress(req.body)) > 10 * 1024 * 1024
    assert soak.mutate(__import__("random").Random(1), b"x" * 100) != b"x" * 100


def test_answer_labels() -> None:
    assert soak.answer_label(200, b'{"Code":10}', "/api/JoinEvents") == "200 Code 10"
    assert soak.answer_label(200, b"<html>", "/api/JoinEvents") == "200 without a Code"
    assert soak.answer_label(413, b"{}", "/v3/events") == "413"


def test_the_table_shows_the_soak_goals_and_its_answers() -> None:
    from bench.report import table

    k = {"requests": 300, "load_s": 2.0, "requests_per_s": 150.0, "statuses": {"200": 250, "413": 50},
         "unexpected": {"v3 gzip bomb": {"400": 3}}, "server_errors_not_503": 0, "worker_restarts": 1,
         "slow_clients": {"idle: closed by the gateway": {"count": 2, "max_held_s": 5.0},
                          "dribble: still open after 30 s": {"count": 1, "max_held_s": 30.0}},
         "slow_clients_held": 3, "slow_clients_unbounded": 1, "slow_give_up_s": 30.0,
         "gateway_rss_before_mb": 100.0, "gateway_rss_after_mb": 110.0, "accepted_events": 900,
         "exactly_once": False, "events_final": 899, "missing": 1, "duplicated": 0, "not_accepted_but_present": 0,
         "maybe_events": 0, "raw_event_rows": 899, "mutated_accepted_events": 0, "mutated_duplicated": 0}
    out = table({"config": {"load_processes": 2, "scale": 0.003, "seed": 1}, "soak": k})
    assert "| soak: slow clients the gateway left open 30 s (of 3 held) | 1 |" in out
    assert "| soak: worker restarts (gateway workers replaced + consumer workers exited) | 1 |" in out
    assert "| soak: accepted events in events_final exactly once (900 events) | NO |" in out
    assert "v3 gzip bomb: 400 × 3" in out and "200 × 250, 413 × 50" in out and "1 missing" in out
