"""Under load through the gateway, kill -9 one Kafka broker and one ClickHouse replica, bring them back: every
accepted event is in events_final exactly once, and sessions_final / joined_events_final equal what the pure
cores compute from the same topics in one uninterrupted pass (tests/integration/consumers/streams.py's reference,
the single-node product's own oracle). The timings go to .local/cluster/fault-test.json for the README."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import random
import re
import signal
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from deploy import cluster, procs
from deploy.migrate import client
from eventpipe.settings import Settings
from ingest_gateway.keystore import create_key
from tests.integration.consumers.conftest import Workers, wait_until
from tests.integration.consumers.streams import Producer, final_rows, random_joins, reference_rows
from tests.integration.gateway.helpers import env_of, request, start_gateway, stop_gateway

from .conftest import node_settings

GATEWAY_PORT = 19081          # beside `make cluster-up`'s 19080
KILLED_BROKER = 2
KILLED_NODE = cluster.NODES[0]  # the workers' first host: they must fail over too
BASE_TS = 1_700_000_000


class Load(threading.Thread):
    """Posts batches of whole sessions (START, UPDATE, END; every event distinct) to the gateway until stopped,
    and produces join records straight to Kafka between batches. Remembers what the gateway accepted."""

    def __init__(self, url: str, key: str, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.settings = url, key, settings
        self.accepted: list[tuple[str, str]] = []   # (session, action) of events the gateway answered 200 for
        self.refused = 0                            # batches answered otherwise (503 while Kafka re-elects)
        self.batches = 0
        self.stopping = threading.Event()
        self.rng = random.Random(11)

    def batch(self, n: int) -> list[dict]:
        events = []
        for i in range(20):
            session = f"s{n:05d}x{i:02d}"
            ts = BASE_TS + n * 30 + i
            events += [{"action": "START", "type": "APPSTART", "timestamp": ts, "session": session,
                        "entities": [{"key": "app", "value": "eventpipe"}]},
                       {"action": "UPDATE", "type": "APPSTART", "timestamp": ts + 1, "session": session,
                        "entities": [{"key": "step", "value": str(i)}]},
                       {"action": "END", "type": "APPSTART", "timestamp": ts + 2 + i, "session": session,
                        "entities": []}]
        return events

    def run(self) -> None:
        producer = Producer(self.settings)
        n = 0
        while not self.stopping.is_set():
            events = self.batch(n)
            body = urllib.parse.urlencode({"apikey": self.key, "data": json.dumps(events)}).encode()
            try:
                status, reply = request(self.url + "/v3/events", body, timeout=15)
                ok = status == 200 and json.loads(reply).get("result") == 1
            except OSError:  # transient: the gateway's answer was lost; the batch counts as not accepted
                ok = False
            if ok:
                self.accepted += [(e["session"], e["action"]) for e in events]
            else:
                self.refused += 1
            if n % 5 == 0:
                try:
                    producer.joins(random_joins(self.rng, 10, base_ms=1_462_058_743_511 + n * 4_000_000))
                except KafkaError:
                    pass  # transient: the reference reads the topic, so whatever got there is what is compared
            n += 1
            self.batches = n
            time.sleep(0.05)
        producer.close()


def kill9(svc: procs.Service) -> None:
    pid = procs.running_pid(svc)
    assert pid is not None, f"{svc.name} is not running"
    os.killpg(pid, signal.SIGKILL)
    while procs.running_pid(svc) is not None:
        time.sleep(0.1)


def isr_complete(settings: Settings) -> bool:
    """True when every partition of the run's topics has all 3 replicas in sync again."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    try:
        topics = admin.describe_topics(list(settings.topics))
    except (KafkaError, OSError):
        return False  # transient: the cluster is still electing
    finally:
        admin.close()
    return all(len(p["isr_nodes"]) == 3 for t in topics for p in t["partitions"])


def replica_caught_up(settings: Settings, node: cluster.Node) -> bool:
    """True when every replicated table of the run's database on ``node`` is writable and has nothing to fetch."""
    try:
        rows = client(node_settings(settings, node)).execute(
            "SELECT count(), countIf(is_readonly OR queue_size > 0 OR absolute_delay > 0 OR "
            "active_replicas < total_replicas) FROM system.replicas WHERE database = %(d)s",
            {"d": settings.clickhouse_database})
    except Exception:  # transient: the server is still starting (any client error means "not yet")
        return False
    return rows[0][0] > 0 and rows[0][1] == 0


def paused_writes(log_dir: Path) -> dict[str, object]:
    """Per worker: how many write attempts failed (and were retried) during the run, with the server error codes
    seen — where the outage was felt."""
    out: dict[str, object] = {}
    for path in sorted(log_dir.glob("*-*.log")):
        lines = [line for line in path.read_text().splitlines() if "write failed" in line]
        codes = sorted(set(re.findall(r"Code: (\d+)", "\n".join(lines))))
        out[f"{path.stem.rsplit('-', 1)[0]}_failed_writes"] = f"{len(lines)} (codes {', '.join(codes) or '-'})"
    return out


@contextlib.contextmanager
def pipeline(cluster_settings: Settings, tmp_path: Path, workers: tuple[str, ...],
             killed: list[procs.Service]) -> Iterator[tuple[Settings, Workers, Load]]:
    """Workers, a gateway on the cluster and the load running; on the way out everything stopped, and every
    service in ``killed`` (the test appends what it kills) running again, so the next test finds the cluster whole
    even when this one failed."""
    s = dataclasses.replace(cluster_settings, home=str(tmp_path), keys_file=str(tmp_path / "keys.json"),
                            http_port=GATEWAY_PORT)
    key, _ = create_key(s.keys_path, "acme")
    pool = Workers(s, tmp_path)
    gateway = None
    load = None
    try:
        for worker in workers:
            pool.start(worker)
        gateway, url = start_gateway(s, env_of(s), tmp_path)
        load = Load(url, key, s)
        load.start()
        yield s, pool, load
    finally:
        if load is not None:
            load.stopping.set()
        if gateway is not None:
            stop_gateway(gateway)
        pool.stop_all()
        for svc in killed:
            if procs.running_pid(svc) is None:
                procs.start(svc)


def test_kill_a_broker_and_a_replica_under_load(fresh_cluster_settings: Settings, tmp_path: Path) -> None:
    base = Settings.from_env()
    t_test = time.monotonic()
    figures: dict[str, object] = {}
    killed = [cluster.broker_service(base, KILLED_BROKER), cluster.node_service(base, KILLED_NODE)]
    with pipeline(fresh_cluster_settings, tmp_path, ("events", "sessions", "joins"), killed) as (s, pool, load):
        time.sleep(8)

        kill9(killed[0])
        time.sleep(5)
        survivor = next(n for n in cluster.NODES if n.shard == KILLED_NODE.shard and n != KILLED_NODE)
        local = client(node_settings(s, survivor), s.clickhouse_database)
        on_shard = {g for (g,) in local.execute("SELECT DISTINCT consumer_group FROM consumer_state_local")}
        kill9(killed[1])
        ((t_down,),) = local.execute("SELECT now()")
        time.sleep(12)  # longer than ZooKeeper's session timeout: the replica's session has expired, as after a crash

        t0 = time.monotonic()
        procs.start(killed[0])
        wait_until(lambda: isr_complete(s), 180, "the restarted broker back in every ISR", pool)
        figures["broker_back_in_isr_s"] = round(time.monotonic() - t0, 1)

        # the replica is still away (since t_down); the stateful workers, past the group's recovery from the
        # broker's death, went on writing the state that lives on its shard
        def written() -> dict[str, int]:
            return dict(local.execute(
                "SELECT consumer_group, count() FROM consumer_state_local WHERE written_at > %(a)s "
                "GROUP BY consumer_group", {"a": t_down + datetime.timedelta(seconds=2)}))

        # (the replica stays away until they have: a slow machine may take longer over the group's recovery)
        wait_until(lambda: all(written().get(g, 0) > 0 for g in on_shard), 90,
                   f"state writes of {sorted(on_shard)} on the shard whose replica is away", pool)
        figures["state_rows_written_while_a_replica_was_away"] = written()
        t0 = time.monotonic()
        procs.start(killed[1])
        wait_until(lambda: replica_caught_up(s, KILLED_NODE), 180, "the restarted replica caught up", pool)
        figures["replica_caught_up_s"] = round(time.monotonic() - t0, 1)

        time.sleep(5)  # load goes on with everything back
        load.stopping.set()
        load.join(60)
        figures.update(batches=load.batches, refused_batches=load.refused, accepted_events=len(load.accepted))
        assert len(load.accepted) > 0

        c = client(s, s.clickhouse_database)
        t0 = time.monotonic()
        expected = {w: reference_rows(s, w) for w in ("events", "sessions", "joins")}
        wait_until(lambda: all(final_rows(c, w) == expected[w] for w in ("sessions", "joins"))
                   and c.execute("SELECT count() FROM events_final")[0][0] == len(expected["events"]),
                   300, "the cluster's tables to equal the pure cores' rows", pool)
        figures["drain_after_load_s"] = round(time.monotonic() - t0, 1)

        # every accepted event exactly once (and nothing twice, accepted or not)
        counts = {(session, action): n for session, action, n in c.execute(
            "SELECT session, toString(action), count() FROM events_final GROUP BY session, action")}
        assert [k for k in load.accepted if counts.get(k) != 1] == []
        assert max(counts.values()) == 1
        assert final_rows(c, "sessions") == expected["sessions"]
        assert final_rows(c, "joins") == expected["joins"]
        assert {r[3] for r in expected["sessions"]} >= {"closed"}
        figures["sessions"] = len(expected["sessions"])
        figures["joined_events"] = len(expected["joins"])
        figures.update(paused_writes(tmp_path))
    figures["test_s"] = round(time.monotonic() - t_test, 1)
    (cluster.home(base) / "fault-test.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"\nfault test figures: {figures}")


def test_a_whole_shard_away_pauses_its_writes_and_they_resume(fresh_cluster_settings: Settings,
                                                              tmp_path: Path) -> None:
    """Both replicas of shard 2 killed: the gateway keeps answering 200 (Kafka is fine), the events worker's
    writes fail and are retried — nothing committed — and when the shard is back every accepted event is in
    events_final exactly once."""
    base = Settings.from_env()
    shard = [n for n in cluster.NODES if n.shard == 2]
    killed = [cluster.node_service(base, node) for node in shard]
    with pipeline(fresh_cluster_settings, tmp_path, ("events",), killed) as (s, pool, load):
        time.sleep(4)
        for svc in killed:
            kill9(svc)
        time.sleep(12)  # a paused worker, the gateway still answering
        assert load.refused == 0
        for svc in killed:
            procs.start(svc)
        time.sleep(4)
        load.stopping.set()
        load.join(60)
        assert load.refused == 0  # 503 is for Kafka only
        c = client(s, s.clickhouse_database)
        wait_until(lambda: c.execute("SELECT count() FROM events_final")[0][0] == len(load.accepted), 180,
                   "every accepted event in events_final", pool)
        counts = {(session, action): n for session, action, n in c.execute(
            "SELECT session, toString(action), count() FROM events_final GROUP BY session, action")}
        assert [k for k in load.accepted if counts.get(k) != 1] == []
        assert "write failed" in (tmp_path / "events-0.log").read_text()  # the outage was felt, and retried
