"""Anchors of the gateway figure: bare producers sending the same Avro frames straight to Kafka.

* anchor A — kafka-python (the gateway's client), ``acks=all``, one process per gateway worker;
* for information — the same with confluent-kafka (librdkafka);
* anchor B — Kafka's own ``ProducerPerformance`` (``kafka-producer-perf-test``) at the workload's mean frame size.

A bare producer process (``python -m bench.producers`` with a JSON spec on stdin) sends its share of pre-encoded
frames as fast as the client takes them for at most ``duration_s``, then waits for every acknowledgement; the
rate is acknowledged records over the whole time including that final wait.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import resource
import subprocess
import sys
import time
from typing import Any

from eventpipe.settings import Settings

PRODUCER_CONFIG = "acks=all, linger 5 ms, batch 256 KiB, idempotence on (as the gateway's producer)"


def _wait_until(start_at: float | None) -> None:
    """Sibling processes start sending together (after each one's imports and connection set-up)."""
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))


QUIET = logging.getLogger("bench.librdkafka")  # librdkafka's connection retries would flood the terminal
QUIET.setLevel(logging.CRITICAL)


class DeliveryFailures:
    """confluent-kafka ``on_delivery`` callback that counts the records Kafka did not acknowledge."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.count += 1


def confluent_produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: DeliveryFailures,
                      wait_s: float) -> None:
    """Hand one record to a confluent-kafka producer, waiting ``wait_s`` at a time while its local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:  # local queue full: let librdkafka drain it
            producer.poll(wait_s)


def send_kafka_python(bootstrap: str, topic: str, frames: list[tuple[bytes, bytes]], duration_s: float,
                      start_at: float | None = None) -> dict:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", enable_idempotence=True,
                             linger_ms=5, batch_size=256 * 1024, max_request_size=1_048_576)
    failed = []
    producer.send(topic, value=frames[0][1], key=frames[0][0]).get(timeout=30)  # connected, metadata known
    _wait_until(start_at)
    t0 = time.monotonic()
    deadline = t0 + duration_s
    sent = 0
    for key, value in frames:
        producer.send(topic, value=value, key=key).add_errback(failed.append)
        sent += 1
        if sent % 1000 == 0 and time.monotonic() > deadline:
            break
    producer.flush(timeout=60)
    elapsed = time.monotonic() - t0
    producer.close(timeout=10)
    return {"acked": sent - len(failed), "failed": len(failed), "elapsed_s": elapsed}


def send_confluent(bootstrap: str, topic: str, frames: list[tuple[bytes, bytes]], duration_s: float,
                   start_at: float | None = None) -> dict:
    from confluent_kafka import Producer

    failed = DeliveryFailures()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 256 * 1024, "partitioner": "murmur2_random"},
                        logger=QUIET)
    producer.produce(topic, value=frames[0][1], key=frames[0][0])
    producer.flush(30)
    _wait_until(start_at)
    t0 = time.monotonic()
    deadline = t0 + duration_s
    sent = 0
    for key, value in frames:
        confluent_produce(producer, topic, key, value, failed, 0.01)
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
            if time.monotonic() > deadline:
                break
    producer.flush(60)
    return {"acked": sent - failed.count, "failed": failed.count, "elapsed_s": time.monotonic() - t0}


def producer_perf(settings: Settings, topic: str, records: int, record_size: int, timeout_s: float) -> dict:
    """Kafka's ProducerPerformance, one JVM, ``acks=all``. Blocks; raises RuntimeError if it fails."""
    from deploy.kafka import java_command, libs

    libs(settings)
    argv = java_command(settings, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                        "--num-records", str(records), "--record-size", str(record_size), "--throughput", "-1",
                        "--producer-props", f"bootstrap.servers={settings.kafka_bootstrap}", "acks=all",
                        "linger.ms=5", "batch.size=262144", heap="512m")
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    wall = time.monotonic() - t0
    # "N records sent, X records/sec (Y MB/sec), A ms avg latency, B ms max latency, P50 ms 50th, ..."
    final = [line for line in out.stdout.splitlines() if "records sent" in line and "50th" in line]
    if out.returncode != 0 or not final:
        raise RuntimeError(f"ProducerPerformance failed (exit {out.returncode}):\n{out.stdout[-1500:]}"
                           f"{out.stderr[-1500:]}")
    m = re.search(r"(\d+) records sent, ([\d.]+) records/sec .*?([\d.]+) ms avg latency.*?(\d+) ms 50th.*?"
                  r"(\d+) ms 99th", final[-1])
    if not m:
        raise RuntimeError(f"ProducerPerformance: cannot parse {final[-1]!r}")
    return {"acked": int(m.group(1)), "rate": float(m.group(2)), "avg_latency_ms": float(m.group(3)),
            "p50_ms": float(m.group(4)), "p99_ms": float(m.group(5)), "wall_s": wall, "line": final[-1].strip()}


def main() -> int:
    spec = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    with open(spec["frames_file"], "rb") as f:
        frames = pickle.load(f)[spec.get("start", 0)::spec.get("step", 1)]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    send = send_kafka_python if spec["client"] == "kafka-python" else send_confluent
    result = send(spec["bootstrap"], spec["topic"], frames, spec["duration_s"], spec.get("start_at"))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
