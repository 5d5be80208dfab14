"""The benchmark's pure parts: the workload generator, percentiles, progress rates and the report table."""

from __future__ import annotations

import json

import pytest

from bench.harness import BenchConfig, percentile
from bench.report import table
from bench.sinks import Progress
from bench.workload import Workload, WorkloadConfig, batches, json_row
from eventpipe.codec import EVENT, JOIN_RECORD


def test_the_workload_is_reproducible_from_its_seed() -> None:
    a, b = Workload(WorkloadConfig(seed=7)), Workload(WorkloadConfig(seed=7))
    assert a.events(500) == b.events(500)
    assert a.event_records(a.events(100)) == b.event_records(b.events(100))
    assert a.joins(50) == b.joins(50)
    assert Workload(WorkloadConfig(seed=8)).events(50) != a.events(50)


def test_sessions_start_update_and_end_in_order_and_singles_have_no_session() -> None:
    events = Workload().events(20_000)
    seen: dict[str, list[str]] = {}
    for e in events:
        if "session" in e:
            assert 8 <= len(e["session"]) <= 20
            seen.setdefault(e["session"], []).append(e["action"])
        else:
            assert e["action"] in ("START", "UPDATE")
    closed = [actions for actions in seen.values() if actions[-1] == "END"]
    assert len(closed) > 1000
    for actions in closed:
        assert actions[0] == "START" and set(actions[1:-1]) <= {"UPDATE"} and len(actions) <= 6
    singles = sum(1 for e in events if "session" not in e)
    assert 0.15 < singles / len(events) < 0.25


def test_records_encode_as_avro_and_json_rows() -> None:
    w = Workload()
    for key, record in w.event_records(w.events(300)):
        frame = EVENT.encode(record)
        decoded = EVENT.decode(frame)
        assert decoded["event_id"] == record["event_id"]
        assert json.loads(key)[0] == record["account_id"]
        row = json_row(record)
        assert row["entity_keys"] == [x["key"] for x in record["entities"]]
        assert row["has_session"] == (record["session"] is not None)
    for _, record in w.join_records(w.joins(100)):
        assert JOIN_RECORD.decode(JOIN_RECORD.encode(record))["component_id"] == record["component_id"]


def test_batches_are_consecutive() -> None:
    events = Workload().events(250)
    chunks = batches(events, 100)
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert [e for c in chunks for e in c] == events


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([5.0], 99) == 5.0


def test_progress_rate_counts_from_assignment() -> None:
    p = Progress(total=1000)
    p.t_start = 0.0
    p.t_assigned = 2.0
    p.points = [(3.0, 400), (4.0, 1000)]
    result = p.result()
    assert result["rate"] == pytest.approx(500.0)
    assert result["startup_s"] == pytest.approx(2.0)
    assert Progress(total=5).result()["rate"] == 0.0


def test_scale_comes_from_the_environment_and_is_checked() -> None:
    assert BenchConfig.from_env({"EVENTPIPE_BENCH_SCALE": "0.05"}).scale == 0.05
    assert BenchConfig.from_env({}).scale == 1.0
    assert BenchConfig.from_env({"EVENTPIPE_BENCH_SCALE": "0.5"}, scale=0.1).scale == 0.1
    with pytest.raises(ValueError):
        BenchConfig.from_env({"EVENTPIPE_BENCH_SCALE": "0"})
    cfg = BenchConfig(scale=0.01)
    assert cfg.count(1_000_000, minimum=10_000) == 10_000
    assert cfg.seconds(20.0, minimum=3.0) == 3.0


def test_the_table_shows_each_figure_beside_its_anchor_and_ratio() -> None:
    results = {
        "config": {"scale": 1.0, "seed": 1, "load_processes": 2},
        "environment": {"cpus": 2, "loadavg_start": 0.5}, "total_s": 300.0,
        "producers": {"kafka_python": {"rate": 20_000.0}, "confluent": {"rate": 200_000.0},
                      "perf_test": {"rate": 100_000.0, "record_size": 166, "p50_ms": 3, "p99_ms": 20}},
        "gateway": {label: {"events_per_s": rate, "p50_ms": 40.0, "p99_ms": 90.0, "batch_size": 100,
                            "connections": 16, "loadgen_cores": 0.1, "loadgen_cpu_s": 2.0, "duration_s": 20.0,
                            "gateway_cores": 1.2, "machine_busy_cores": 1.9, "machine_cores_total": 2.0, "errors": {}}
                    for label, rate in (("confluent", 40_000.0), ("kafka_python", 16_000.0),
                                        ("http_limit", 50_000.0))},
        "sinks": {"events": {"rate": 10_000.0, "per_cpu_s": 11_000.0, "peak_rss_mb": 80.0},
                  "events_kafka_python": {"rate": 6_000.0, "per_cpu_s": 7_000.0, "peak_rss_mb": 80.0},
                  "anchor_c": {"rate": 40_000.0, "per_cpu_s": 100_000.0}},
        "e2e": {"pipeline_max": {"events_per_s": 10_000.0, "gateway_events_per_s": 30_000.0,
                                 "events_sink_per_s": 12_000.0, "sessions_per_s": 10_000.0},
                "events_per_s": 5_000.0, "p50_s": 0.8, "p99_s": 1.5, "sessions_measured": 10,
                "sessions_missing": 0, "poll_interval_s": 0.1, "http_p50_ms": 10.0, "http_p99_ms": 50.0},
        "memory": {"open_keys": 1_000_000, "peak_rss_mb": 250.0},
    }
    text = table(results)
    assert "| gateway events/s, confluent-kafka (batches of 100, 16 keep-alive conns) | 40,000 |" in text
    assert "| 50,000 | 0.80× | ≥ 0.7× D |" in text    # gateway / anchor D
    assert "| 16,000 | 2.50× | ≥ 2× |" in text        # librdkafka gateway / kafka-python gateway
    assert "| 20,000 | 0.80× |" in text               # kafka-python gateway / anchor A
    assert "| 40,000 | 0.15× |" in text               # events sink (kafka-python) / anchor C
    assert "half of the whole pipeline's maximum, 10,000 events/s" in text
    assert "0.25×" in text    # events sink / anchor C
    assert "0.75×" in text    # e2e p99 / 2 s
    assert "0.83×" in text    # 250 MB / 300 MB
    assert "10 % of one core" in text
