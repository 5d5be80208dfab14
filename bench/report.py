"""The markdown table of one run: each figure beside its anchor from the same run, the ratio, and the target."""

from __future__ import annotations

from typing import Any


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, anchor: float | None) -> str:
    if not value or not anchor:
        return "–"
    return f"{value / anchor:.2f}×"


def table(r: dict[str, Any]) -> str:
    """Render ``results`` (the dict written to latest.json) as a markdown table plus notes."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    g, p = r.get("gateway") or {}, r.get("producers") or {}
    a, b, c = p.get("kafka_python") or {}, p.get("perf_test") or {}, p.get("confluent") or {}
    procs = r["config"]["load_processes"]
    if g:
        spread = (f" (mean of {_n(a['rate_before'])} before and {_n(a['rate_after'])} after the gateway)"
                  if "rate_after" in a else "")
        rows.append((f"gateway events/s (batches of {g['batch_size']}, {g['connections']} keep-alive conns)",
                     _n(g["events_per_s"]), f"A: bare kafka-python producer, acks=all, {procs} procs{spread}",
                     _n(a.get("rate")), _ratio(g["events_per_s"], a.get("rate")), "≥ 0.8× A"))
        rows.append(("", "", f"B: kafka-producer-perf-test, {b.get('record_size', '?')} B records, 1 JVM",
                     _n(b.get("rate")), _ratio(g["events_per_s"], b.get("rate")), ""))
        rows.append(("", "", f"(info) bare confluent-kafka producer, {procs} procs", _n(c.get("rate")),
                     _ratio(g["events_per_s"], c.get("rate")), ""))
        rows.append(("gateway request latency p50 / p99 (ms)", f"{_n(g['p50_ms'], 1)} / {_n(g['p99_ms'], 1)}",
                     "B: perf-test record latency p50 / p99 (ms)",
                     f"{_n(b.get('p50_ms'), 0)} / {_n(b.get('p99_ms'), 0)}", "", ""))
    s = r.get("sinks") or {}
    anchor = s.get("anchor_c") or {}
    for worker, label, unit in (("events", "events sink", "events"), ("sessions", "sessions worker", "events"),
                                ("joins", "joins worker", "join records")):
        w = s.get(worker)
        if not w:
            continue
        rows.append((f"{label}: {unit}/s per worker (pre-filled topic → ClickHouse)", _n(w["rate"]),
                     "C: ClickHouse Kafka engine, JSONEachRow → MV → ReplacingMergeTree", _n(anchor.get("rate")),
                     _ratio(w["rate"], anchor.get("rate")), "≥ 0.5× C" if worker == "events" else ""))
        rows.append((f"{label}: {unit} per CPU-second", _n(w.get("per_cpu_s")),
                     "C: rows per ClickHouse CPU-second", _n(anchor.get("per_cpu_s")),
                     _ratio(w.get("per_cpu_s"), anchor.get("per_cpu_s")), ""))
    e = r.get("e2e") or {}
    if e:
        rows.append((f"end to end, HTTP 200 → row in sessions_final, p50 / p99 (s) at "
                     f"{_n(e['events_per_s'])} events/s", f"{_n(e['p50_s'], 2)} / {_n(e['p99_s'], 2)}",
                     "target p99", "2.00", _ratio(e.get("p99_s"), 2.0), "p99 ≤ 2 s"))
    m = r.get("memory") or {}
    if m:
        rows.append((f"peak RSS, SessionPairer holding {_n(m['open_keys'])} open sessions (MB)",
                     _n(m["peak_rss_mb"], 0), "target", "300", _ratio(m["peak_rss_mb"], 300.0), "≤ 300 MB"))
        if s.get("sessions"):
            rows.append(("(info) sessions worker peak RSS after the consumer phase (MB)",
                         _n(s["sessions"].get("peak_rss_mb"), 0), "", "", "", ""))
    out = ["| measurement | value | anchor (same run) | anchor value | ratio | target |",
           "|---|---:|---|---:|---:|---|"]
    out += [f"| {' | '.join(row)} |" for row in rows]
    notes = []
    if g:
        notes.append(f"Load generator: {g['loadgen_cores'] * 100:.0f} % of one core "
                     f"({g['loadgen_cpu_s']:.1f} CPU-s over {g['duration_s']:.1f} s); gateway "
                     f"{g['gateway_cores'] * 100:.0f} % of one core; whole machine busy "
                     f"{g['machine_busy_cores']:.2f} of {g['machine_cores_total']:.0f} cores during the gateway phase.")
        if g.get("errors"):
            notes.append(f"Gateway non-200 answers: {g['errors']}.")
    if e:
        notes.append(f"End-to-end rate = half of the slowest measured stage; {e['sessions_measured']} sessions "
                     f"measured, {e['sessions_missing']} missing; latency resolution {e['poll_interval_s']} s "
                     f"(poll interval); HTTP p50/p99 during it {_n(e.get('http_p50_ms'), 1)} / "
                     f"{_n(e.get('http_p99_ms'), 1)} ms.")
    for phase, what in (r.get("disturbed") or {}).items():
        notes.append(f"**Disturbed:** {phase} phase — {what}; its figures do not count.")
    env = r.get("environment", {})
    if (env.get("loadavg_start") or 0) > 1.0:
        notes.append(f"The machine was not idle at the start (load average {env['loadavg_start']}): figures of this "
                     "run are lower and noisier than on an idle machine; compare the ratios.")
    notes.append(f"Scale {r['config']['scale']}, seed {r['config']['seed']}, {env.get('cpus')} CPUs, load average "
                 f"at start {env.get('loadavg_start')}, run took {r.get('total_s', 0):.0f} s.")
    return "\n".join(out) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
