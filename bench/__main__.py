"""``python -m bench`` (``make bench``): eventpipe beside its anchors, one run, one machine, one table.

Phases, each bounded in time and each with its own topics (``bench_<run>_<phase>.*``) and database:

1. producers — anchor A (bare kafka-python), the same with confluent-kafka, anchor B (ProducerPerformance);
2. gateway   — closed-loop HTTP load, batches of 100, keep-alive connections, with each Kafka client, and anchor
               D: the same server with a publisher that acknowledges without Kafka (the HTTP-layer limit);
3. consumers — events, sessions and joins workers, with each Kafka client, each drain a pre-filled topic;
               anchor C is ClickHouse's Kafka engine draining the same events as JSONEachRow;
4. end to end — the whole pipeline's maximum (gateway and workers running together, closed loop), then the
               gateway paced at half of it, HTTP 200 → row in ``sessions_final``;
5. memory    — peak RSS of a SessionPairer holding 1 000 000 open sessions;
6. recovery  — the real sessions and joins workers holding 1 000 000 open keys each: peak RSS, then kill -9 and
               restart → time until consuming again, split into waiting for assignment and restoring state.

Not part of the default run (minutes of hostile traffic; ``--only soak``, ``make soak``):

6. soak      — 100 000 mixed valid, invalid and hostile requests to both routes of the gateway with every worker
               consuming: answers by status, 5xx other than 503, gateway RSS, worker restarts, exactly once in
               ``events_final`` (bench/soak.py).

Kafka and ClickHouse are brought up with deploy's ``infra_up`` (and stopped afterwards if this run started
them). ``EVENTPIPE_BENCH_SCALE`` (or ``--scale``) shrinks every count and duration; the smoke test uses 0.02.
Writes ``bench/results/latest.json`` and prints the table (stdout); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import platform
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from eventpipe.settings import REPO_ROOT, Settings, SettingsError

from . import e2e, gateway, producers, recovery, report, sinks, soak
from .harness import (BenchConfig, BenchError, Processes, python_module, replace, run_json, run_parallel, say)
from .workload import Workload, WorkloadConfig, batches, json_row

RESULTS = REPO_ROOT / "bench" / "results"
ANCHOR_REPEAT = 4  # anchor C reads the events this many times over (see bench/sinks.py)


class Run:
    """One benchmark run: its settings, what it created (to remove) and its results."""

    def __init__(self, cfg: BenchConfig, base: Settings, only: set[str] | None = None) -> None:
        self.cfg, self.base, self.only = cfg, base, only or set()
        self.id = "bench_" + time.strftime("%Y%m%d_%H%M%S") + "_" + uuid.uuid4().hex[:4]
        self.home = base.home_path / "bench" / self.id
        self.home.mkdir(parents=True, exist_ok=True)
        self.procs = Processes(self.home / "logs")
        self.topics: list[str] = []
        self.databases: list[str] = []
        self.results: dict[str, Any] = {"run_id": self.id, "config": dataclasses.asdict(cfg), "errors": {},
                                        "environment": environment()}

    def settings(self, phase: str, database: bool = False) -> Settings:
        """Settings of a phase: its own topics, and its own migrated database when asked. Blocks."""
        from deploy.migrate import migrate
        from deploy.topics import ensure_topics

        s = replace(self.base, topic_prefix=f"{self.id}_{phase}",
                    clickhouse_database=f"{self.id}_{phase}" if database else self.base.clickhouse_database)
        ensure_topics(s)
        self.topics += list(s.topics)
        if database:
            self.databases.append(s.clickhouse_database)
            migrate(s)
        return s

    def database(self, s: Settings) -> Settings:
        """``s`` with its ClickHouse database migrated (and removed at the end of the run). Blocks."""
        from deploy.migrate import migrate

        self.databases.append(s.clickhouse_database)
        migrate(s)
        return s

    def profile_dir(self, name: str) -> Path | None:
        """Where a profiled process writes its report (None: not profiling)."""
        return self.home / "profiles" if self.cfg.profile else None

    def phase(self, name: str, body: Callable[[], Any]) -> Any:
        """Run one phase; a failure is recorded (and printed) and the run goes on with the next phase."""
        if self.only and name not in self.only:
            return None
        say(f"--- {name}")
        t0 = time.monotonic()
        servers = server_pids(self.base)
        try:
            value = body()
        except (BenchError, RuntimeError, OSError, TimeoutError) as exc:  # a phase that cannot be measured
            say(f"{name} FAILED: {exc}")
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            value = None
        except Exception as exc:  # a bug in the harness or a server error: record it with the traceback
            say(f"{name} FAILED:\n{traceback.format_exc()}")
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            value = None
        finally:
            self.procs.stop_all()
            now = server_pids(self.base)
            moved = [k for k in servers if servers[k] != now[k]]
            if moved:  # someone else restarted a server under us: the phase's figures are not comparable
                self.results.setdefault("disturbed", {})[name] = (
                    f"{' and '.join(moved)} restarted (or stopped) during this phase by something else")
                say(f"{name}: WARNING {self.results['disturbed'][name]}")
        say(f"{name}: {time.monotonic() - t0:.1f} s")
        return value

    def clean_up(self) -> None:
        from deploy.migrate import client
        from deploy.topics import delete_topics

        self.procs.stop_all()
        for scratch in self.home.glob("*.pkl"):  # the pre-encoded workload (hundreds of MB at scale 1)
            scratch.unlink()
        try:
            delete_topics(self.base, self.topics)
        except Exception as exc:  # clean-up only
            say(f"deleting topics failed: {exc}")
        for db in self.databases:
            try:
                client(self.base).execute(f"DROP DATABASE IF EXISTS `{db}`")
            except Exception as exc:  # clean-up only
                say(f"dropping database {db} failed: {exc}")


def server_pids(settings: Settings) -> dict[str, int | None]:
    """The pids of the local Kafka and ClickHouse (None when external or not running)."""
    from deploy import clickhouse, kafka, procs

    return {"Kafka": procs.running_pid(kafka.service(settings)) if settings.local_kafka else None,
            "ClickHouse": procs.running_pid(clickhouse.service(settings)) if settings.local_clickhouse else None}


def environment() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "loadavg_start": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def bare_producers(run: Run, s: Settings, client: str, frames_file: Path) -> dict[str, Any]:
    """One bare-producer measurement: ``load_processes`` processes of ``client`` sending their share of frames."""
    cfg = run.cfg
    duration = cfg.seconds(15.0, minimum=2.0)
    start_at = time.time() + 3.0
    specs = [{"client": client, "bootstrap": s.kafka_bootstrap, "topic": s.topic_events,
              "frames_file": str(frames_file), "start": i, "step": cfg.load_processes, "duration_s": duration,
              "start_at": start_at} for i in range(cfg.load_processes)]
    results = run_parallel(python_module("bench.producers"), specs, timeout_s=duration + 120)
    acked = sum(r["acked"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    say(f"{client}: {acked / elapsed:,.0f} records/s ({acked} in {elapsed:.1f} s)")
    return {"rate": acked / elapsed, "acked": acked, "failed": sum(r["failed"] for r in results),
            "elapsed_s": elapsed, "cpu_s": sum(r["cpu_s"] for r in results), "processes": len(results)}


def run_producers(run: Run, frames_file: Path, mean_size: int) -> dict[str, Any]:
    cfg = run.cfg
    s = run.settings("prod")
    out: dict[str, Any] = {"config": producers.PRODUCER_CONFIG}
    out["kafka_python"] = bare_producers(run, s, "kafka-python", frames_file)
    out["confluent"] = bare_producers(run, s, "confluent", frames_file)
    from deploy.topics import ensure_topics

    perf_topic = f"{s.topic_prefix}.perf"
    ensure_topics(s, (perf_topic,))
    run.topics.append(perf_topic)
    perf = producers.producer_perf(s, perf_topic, cfg.count(1_500_000, 20_000), mean_size, timeout_s=180)
    perf["record_size"] = mean_size
    out["perf_test"] = perf
    say(f"ProducerPerformance: {perf['line']}")
    return out


# The gateway phase's servers: label -> (EVENTPIPE_KAFKA_CLIENT, module run as the server)
GATEWAYS = {"confluent": ("confluent-kafka", "ingest_gateway"), "kafka_python": ("kafka-python", "ingest_gateway"),
            "http_limit": ("confluent-kafka", "bench.http_limit")}


def run_gateway(run: Run, event_batches: list[list[dict]], frames_file: Path) -> dict[str, Any]:
    s = run.settings("gw")
    bodies_file = run.home / "bodies.pkl"
    n = gateway.write_bodies(bodies_file, event_batches)
    with open(bodies_file, "rb") as f:
        warm = pickle.load(f)[:50]
    out: dict[str, Any] = {}
    for label, (client, module) in GATEWAYS.items():
        gw = gateway.Gateway(run.procs, replace(s, kafka_client=client), run.home / f"gateway-{label}",
                             name=f"gateway-{label}", module=module,
                             profile_dir=run.profile_dir("gateway") if label == "confluent" else None)
        gw.warm_up(warm)
        result = gateway.measure(run.cfg, gw, bodies_file, n, len(event_batches[0]))
        say(f"gateway ({label}): {result['events_per_s']:,.0f} events/s, p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, gateway {result['gateway_cores'] * 100:.0f} % of a core, "
            f"load generator {result['loadgen_cores'] * 100:.0f} %")
        run.procs.stop(gw.proc)
        out[label] = result
    # Anchor A once more, right after the gateways: the two measurements bracket theirs, so a machine that got
    # busier or quieter in between shows as a spread instead of a bias.
    out["anchor_a_after"] = bare_producers(run, run.settings("prod2"), "kafka-python", frames_file)
    return out


def run_sinks(run: Run, event_frames: list[tuple[bytes, bytes]], event_records: list, workload: Workload
              ) -> dict[str, Any]:
    from deploy.topics import ensure_topics

    cfg = run.cfg
    s = run.settings("sink", database=True)
    json_topic = f"{s.topic_prefix}.json"
    ensure_topics(s, (json_topic,))
    run.topics.append(json_topic)
    from eventpipe.codec import JOIN_RECORD

    join_frames = [(k, JOIN_RECORD.encode(r))
                   for k, r in workload.join_records(workload.joins(cfg.count(cfg.sink_joins, 500)))]
    json_frames = sinks.json_records(event_records, json_row) * ANCHOR_REPEAT
    for topic, frames in ((s.topic_events, event_frames), (s.topic_joins, join_frames), (json_topic, json_frames)):
        seconds = sinks.prefill(s, topic, frames)
        say(f"pre-filled {topic}: {len(frames)} records in {seconds:.1f} s")
    out: dict[str, Any] = {}
    for client, suffix in (("confluent-kafka", ""), ("kafka-python", "_kafka_python")):
        if suffix:  # the same topics again: the groups start over, into a database of their own
            sinks.delete_groups(s, [f"{s.topic_prefix}.{w}" for w in ("events", "sessions", "joins")])
            s = run.database(replace(s, clickhouse_database=s.clickhouse_database + suffix))
        cs = replace(s, kafka_client=client)
        for worker, total in (("events", len(event_frames)), ("sessions", len(event_frames)),
                              ("joins", len(join_frames))):
            r = sinks.drain_worker(run.procs, cs, worker, total, cfg.sink_timeout_s,
                                   run.profile_dir(f"consumer-{worker}") if not suffix else None)
            out[worker + suffix] = r
            say(f"{worker} worker ({client}): {r['rate']:,.0f} records/s ({r['done']}/{total}, "
                f"{r['busy_s'] or 0:.1f} s after assignment, start-up {r['startup_s'] or 0:.1f} s, "
                f"{r['cpu_s']:.1f} CPU-s, peak RSS {r['peak_rss_mb']:.0f} MB)")
    c = sinks.drain_kafka_engine(s, json_topic, len(json_frames), cfg.sink_timeout_s)
    out["anchor_c"] = c
    say(f"anchor C (Kafka engine): {c['rate']:,.0f} rows/s ({c['done']}/{len(json_frames)}, "
        f"{c['busy_s'] or 0:.1f} s after assignment, ClickHouse {c['cpu_s'] or 0:.1f} CPU-s)")
    return out


def run_e2e(run: Run, workload: Workload) -> dict[str, Any]:
    """The whole pipeline's maximum, then its latency paced at half of that (each on fresh topics and tables)."""
    top = e2e.pipeline_max(run.cfg, run.procs, run.settings("max", database=True), run.home / "gateway-max",
                           workload)
    run.procs.stop_all()
    say(f"whole pipeline maximum: {top['events_per_s']:,.0f} events/s ({top['events']} events through every stage; "
        f"gateway alone {top['gateway_events_per_s']:,.0f}, events sink {top['events_sink_per_s']:,.0f}, sessions "
        f"worker {top['sessions_per_s']:,.0f})")
    result = e2e.run(run.cfg, run.procs, run.settings("e2e", database=True), run.home / "gateway-e2e", workload,
                     0.5 * top["events_per_s"])
    result["pipeline_max"] = top
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=None, help="override EVENTPIPE_BENCH_SCALE (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the gateway and the workers with pyinstrument (slower figures)")
    parser.add_argument("--only", default="", help="comma-separated phases to run (producers, gateway, consumers, "
                        "e2e, memory, recovery, soak); default all but soak")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    try:
        cfg = BenchConfig.from_env(scale=args.scale, profile=args.profile or None)
        base = Settings.from_env()
    except (ValueError, SettingsError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    from deploy.procs import DeployError
    from deploy.stack import infra_up, stop_services

    t0 = time.monotonic()
    try:
        started = infra_up(base)
    except DeployError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    run = Run(cfg, base, {p.strip() for p in args.only.split(",") if p.strip()})
    say(f"run {run.id}: scale {cfg.scale}, logs in {run.home / 'logs'}")
    try:
        execute(run)
    finally:
        run.clean_up()
        stop_services(base, started)
    run.results["total_s"] = time.monotonic() - t0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(run.results, indent=2, default=str) + "\n")
    print(report.table(run.results))
    if run.results["errors"]:
        print("Phases that failed: " + "; ".join(f"{k}: {v}" for k, v in run.results["errors"].items()))
    say(f"results in {args.output}")
    return 1 if run.results["errors"] else 0


def execute(run: Run) -> None:
    if OPT_IN & run.only:
        run.results["soak"] = run.phase("soak", lambda: soak.run(run.cfg, run.procs, run.settings("soak", database=True),
                                                                 run.home / "gateway-soak"))
    if run.only and not run.only - OPT_IN:
        return  # only opt-in phases asked for: no workload to generate
    default_phases(run)


OPT_IN = {"soak"}  # phases that run only when named in --only


def default_phases(run: Run) -> None:
    from eventpipe.codec import EVENT

    cfg, r = run.cfg, run.results
    say("generating the workload")
    workload = Workload(WorkloadConfig(seed=cfg.seed))
    n_events = cfg.count(cfg.sink_events, 2_000)
    events = workload.events(n_events)
    records = workload.event_records(events)
    frames = [(k, EVENT.encode(v)) for k, v in records]
    mean_size = round(sum(len(v) for _, v in frames) / len(frames))
    frames_file = run.home / "frames.pkl"
    with open(frames_file, "wb") as f:
        pickle.dump(frames, f)
    gateway_batches = batches(events[:cfg.count(100_000, 1_000) // cfg.batch_size * cfg.batch_size], cfg.batch_size)
    del events
    r["workload"] = {"events": n_events, "mean_avro_bytes": mean_size,
                     "sessions": sum(1 for _, v in records if v["action"] == "START" and v["session"])}
    r["producers"] = run.phase("producers", lambda: run_producers(run, frames_file, mean_size))
    r["gateway"] = run.phase("gateway", lambda: run_gateway(run, gateway_batches, frames_file))
    a = (r.get("producers") or {}).get("kafka_python")
    after = (r.get("gateway") or {}).get("anchor_a_after")
    if a and after:  # anchor A = the mean of the measurements before and after the gateway's
        a["rate_before"], a["rate_after"] = a["rate"], after["rate"]
        a["rate"] = (a["rate_before"] + a["rate_after"]) / 2
    elif after:  # the producers phase failed: the measurement after the gateway is anchor A on its own
        r["producers"] = {**(r.get("producers") or {}), "kafka_python": after}
    r["sinks"] = run.phase("consumers", lambda: run_sinks(run, frames, records, workload))
    del frames, records
    r["e2e"] = run.phase("e2e", lambda: run_e2e(run, workload))
    n_sessions = cfg.count(cfg.memory_sessions, 10_000)
    r["memory"] = run.phase("memory", lambda: run_json(python_module("bench.memory", str(n_sessions)), None,
                                                       timeout_s=600))
    r["recovery"] = run.phase("recovery", lambda: run_recovery(run))


def run_recovery(run: Run) -> dict[str, Any]:
    n = run.cfg.count(run.cfg.memory_sessions, 10_000)
    return {worker: recovery.measure(run.procs, run.settings(f"rec_{worker}", database=True), worker, n,
                                     timeout_s=max(120.0, n / 2_000))
            for worker in ("sessions", "joins")}


if __name__ == "__main__":
    sys.exit(main())
