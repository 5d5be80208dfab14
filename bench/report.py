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
    gw, p = r.get("gateway") or {}, r.get("producers") or {}
    a, b, c = p.get("kafka_python") or {}, p.get("perf_test") or {}, p.get("confluent") or {}
    procs = r["config"]["load_processes"]
    g, gk, d = gw.get("confluent") or {}, gw.get("kafka_python") or {}, gw.get("http_limit") or {}
    if g or gk:
        spread = (f" (mean of {_n(a['rate_before'])} before and {_n(a['rate_after'])} after the gateways)"
                  if "rate_after" in a else "")
        any_g = g or gk
        conns = f"batches of {any_g['batch_size']}, {any_g['connections']} keep-alive conns"
        d_label = "D: the same gateway, publisher acknowledging without Kafka (HTTP-layer limit)"
        if g:
            rows.append((f"gateway events/s, confluent-kafka ({conns})", _n(g["events_per_s"]), d_label,
                         _n(d.get("events_per_s")), _ratio(g["events_per_s"], d.get("events_per_s")), "≥ 0.7× D"))
            rows.append(("", "", "the kafka-python gateway of this run", _n(gk.get("events_per_s")),
                         _ratio(g["events_per_s"], gk.get("events_per_s")), "≥ 2×"))
            rows.append(("", "", f"(info) bare confluent-kafka producer, {procs} procs", _n(c.get("rate")),
                         _ratio(g["events_per_s"], c.get("rate")), ""))
        if gk:
            rows.append((f"gateway events/s, kafka-python", _n(gk["events_per_s"]), d_label,
                         _n(d.get("events_per_s")), _ratio(gk["events_per_s"], d.get("events_per_s")), ""))
            rows.append(("", "", f"A: bare kafka-python producer, acks=all, {procs} procs{spread}",
                         _n(a.get("rate")), _ratio(gk["events_per_s"], a.get("rate")), ""))
        rows.append(("", "", f"B: kafka-producer-perf-test, {b.get('record_size', '?')} B records, 1 JVM",
                     _n(b.get("rate")), _ratio((g or gk)["events_per_s"], b.get("rate")), ""))
        for label, x in (("confluent-kafka", g), ("kafka-python", gk), ("anchor D", d)):
            if x:
                rows.append((f"gateway request latency p50 / p99 (ms), {label}",
                             f"{_n(x['p50_ms'], 1)} / {_n(x['p99_ms'], 1)}", "B: perf-test record latency p50 / p99",
                             f"{_n(b.get('p50_ms'), 0)} / {_n(b.get('p99_ms'), 0)}", "", ""))
    s = r.get("sinks") or {}
    anchor = s.get("anchor_c") or {}
    targets = {"events": "≥ 0.5× C", "sessions": "≥ 0.4× C", "joins": "≥ 0.3× C"}
    for worker, label, unit in (("events", "events sink", "events"), ("sessions", "sessions worker", "events"),
                                ("joins", "joins worker", "join records")):
        for suffix, client in (("", "confluent-kafka"), ("_kafka_python", "kafka-python")):
            w = s.get(worker + suffix)
            if not w:
                continue
            rows.append((f"{label}, {client}: {unit}/s per worker (pre-filled topic → ClickHouse)", _n(w["rate"]),
                         "C: ClickHouse Kafka engine, JSONEachRow → MV → ReplacingMergeTree", _n(anchor.get("rate")),
                         _ratio(w["rate"], anchor.get("rate")), targets[worker] if not suffix else ""))
            rows.append((f"{label}, {client}: {unit} per CPU-second", _n(w.get("per_cpu_s")),
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
    for worker, what in (("sessions", "open sessions"), ("joins", "open join windows")):
        x = (r.get("recovery") or {}).get(worker)
        if not x:
            continue
        rows.append((f"peak RSS, real {worker} worker holding {_n(x['open_keys'])} {what} (MB)",
                     _n(x["peak_rss_mb"], 0), "target", "300", _ratio(x["peak_rss_mb"], 300.0), "≤ 300 MB"))
        rows.append((f"{worker} worker, kill -9 + restart → consuming again (s): assignment "
                     f"{_n(x['assignment_s'], 1)} + restore {_n(x['restore_s'], 1)}, then one flush",
                     _n(x["consuming_s"], 1), "target", "5.0", _ratio(x["consuming_s"], 5.0), "≤ 5 s"))
        rows.append((f"(info) {worker} worker peak RSS after the restart, restoring (MB)",
                     _n(x["restart_peak_rss_mb"], 0), "", "", "", ""))
    k = r.get("soak") or {}
    if k:
        rows.append((f"soak: {_n(k['requests'])} mixed valid, invalid and hostile requests, 5xx other than 503",
                     _n(k["server_errors_not_503"]), "", "", "", "0"))
        rows.append(("soak: answers outside what the SPEC allows their kind", _n(sum(
            sum(v.values()) for v in k["unexpected"].values())), "", "", "", "0"))
        rows.append((f"soak: slow clients the gateway left open {k['slow_give_up_s']:.0f} s (of {k['slow_clients_held']} held)",
                     _n(k["slow_clients_unbounded"]), "", "", "", "0"))
        rows.append(("soak: worker restarts (gateway workers replaced + consumer workers exited)",
                     _n(k["worker_restarts"]), "", "", "", "0"))
        rows.append(("soak: gateway RSS before / after (MB)",
                     f"{_n(k['gateway_rss_before_mb'])} / {_n(k['gateway_rss_after_mb'])}", "", "", "", ""))
        rows.append((f"soak: accepted events in events_final exactly once ({_n(k['accepted_events'])} events)",
                     "yes" if k["exactly_once"] else "NO", "", "", "", "yes"))
    out = ["| measurement | value | anchor (same run) | anchor value | ratio | target |",
           "|---|---:|---|---:|---:|---|"]
    out += [f"| {' | '.join(row)} |" for row in rows]
    notes = []
    for label, x in (("confluent-kafka", g), ("kafka-python", gk), ("anchor D", d)):
        if not x:
            continue
        notes.append(f"Gateway ({label}): load generator {x['loadgen_cores'] * 100:.0f} % of one core, gateway "
                     f"{x['gateway_cores'] * 100:.0f} % of one core, machine busy {x['machine_busy_cores']:.2f} of "
                     f"{x['machine_cores_total']:.0f} cores" + (f"; non-200 answers {x['errors']}" if x.get("errors")
                                                                 else "") + ".")
    if e:
        top = e.get("pipeline_max") or {}
        notes.append(f"End-to-end rate = half of the whole pipeline's maximum, {_n(top.get('events_per_s'))} "
                     f"events/s: the gateway under closed-loop load with the events sink and the sessions worker "
                     f"running beside it, events acknowledged ÷ time until the slower worker committed them all "
                     f"(gateway alone {_n(top.get('gateway_events_per_s'))}, events sink "
                     f"{_n(top.get('events_sink_per_s'))}, sessions {_n(top.get('sessions_per_s'))} events/s); "
                     f"{e['sessions_measured']} sessions "
                     f"measured, {e['sessions_missing']} missing; latency resolution {e['poll_interval_s']} s "
                     f"(poll interval); HTTP p50/p99 during it {_n(e.get('http_p50_ms'), 1)} / "
                     f"{_n(e.get('http_p99_ms'), 1)} ms.")
    if k:
        notes.append(f"Soak: {k['requests_per_s']:,.0f} requests/s over {k['load_s']:.0f} s; answers "
                     + ", ".join(f"{label} × {n:,}" for label, n in k["statuses"].items()) + ".")
        if k["unexpected"]:
            notes.append("Soak, unexpected answers by kind: " + "; ".join(
                f"{kind}: {', '.join(f'{label} × {n:,}' for label, n in v.items())}"
                for kind, v in k["unexpected"].items()) + ".")
        notes.append("Soak, slow clients (held beside the load): " + ", ".join(
            f"{what} × {x['count']} (held up to {x['max_held_s']:.0f} s)" for what, x in k["slow_clients"].items()) + ".")
        notes.append(f"Soak, events_final: {k['events_final']:,} of {k['accepted_events']:,} accepted events, "
                     f"{k['missing']} missing, {k['duplicated']} twice, {k['not_accepted_but_present']} never "
                     f"acknowledged ({k['maybe_events']} in batches answered 503 or not at all may be); "
                     f"{k['raw_event_rows']:,} raw rows; mutated bodies accepted as {k['mutated_accepted_events']} "
                     f"events, {k['mutated_duplicated']} twice.")
    for phase, what in (r.get("disturbed") or {}).items():
        notes.append(f"**Disturbed:** {phase} phase — {what}; its figures do not count.")
    env = r.get("environment", {})
    if (env.get("loadavg_start") or 0) > 1.0:
        notes.append(f"The machine was not idle at the start (load average {env['loadavg_start']}): figures of this "
                     "run are lower and noisier than on an idle machine; compare the ratios.")
    notes.append(f"Scale {r['config']['scale']}, seed {r['config']['seed']}, {env.get('cpus')} CPUs, load average "
                 f"at start {env.get('loadavg_start')}, run took {r.get('total_s', 0):.0f} s.")
    return "\n".join(out) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
