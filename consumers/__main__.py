"""``python -m consumers events|sessions|joins|deadletters|components`` — run one worker process.

Each worker is its own consumer group (``PREFIX.events``, ``PREFIX.sessions``, …); start more processes of the
same worker to scale out (Kafka partitions are the unit of parallelism). Configuration is the ``EVENTPIPE_*``
environment (``eventpipe/settings.py``); the flags below override it for this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import gc
import logging
import signal
import socket
import sys

from eventpipe.memory import large_allocations_return_to_the_system
from eventpipe.settings import Settings, SettingsError

from . import logs, metrics
from .processors import WORKERS

# `make run` (deploy/stack.py) gives the workers EVENTPIPE_CONSUMER_METRICS_PORT + these on one host
METRICS_PORT_OFFSET = {"events": 0, "sessions": 1, "joins": 2, "deadletters": 3, "components": 4}
log = logging.getLogger("consumers")
GC_THRESHOLD = (50_000, 20, 10)  # container allocations before a young collection (default 700), then as default
# A batch's buffers (the rows' columns, the state INSERT, librdkafka's fetches) come and go while the state only
# grows: with glibc's own threshold they stayed in the heap, and a sessions worker catching up on 1 M open
# sessions peaked at 310 MB; at 1 MiB at 293 MB (4 MiB: 298), at the same speed (bench recovery phase).
MMAP_THRESHOLD = 1024 * 1024


def memory_policy() -> None:
    """The memory policy of a worker process: its garbage collector's, and glibc's. A batch's rows (and a
    stateful worker's state) live for a while, so with the default threshold the collector walks them over and
    over: 20–35 % of a worker's in-process CPU (``python -m bench.inprocess``). Reference counting frees nearly
    everything the per-record path allocates (it makes no cycles), so collecting every 50 000 allocations instead
    of 700 costs little memory; what exists at start-up (modules, settings) is frozen out of every collection.
    Large blocks are mappings of their own (``MMAP_THRESHOLD``), returned when freed."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    large_allocations_return_to_the_system(MMAP_THRESHOLD)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m consumers", description="Run one eventpipe worker (Kafka -> ClickHouse). Settings come "
        "from the EVENTPIPE_* environment; these flags override them for this process.")
    parser.add_argument("worker", choices=sorted(WORKERS))
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="/metrics port (default EVENTPIPE_CONSUMER_METRICS_PORT; 0: any free port; a busy port "
                             "falls back to a free one, so more instances can share a host)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address of the /metrics server (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--batch-rows", type=int, default=None, help="override EVENTPIPE_BATCH_ROWS")
    parser.add_argument("--batch-seconds", type=float, default=None, help="override EVENTPIPE_BATCH_SECONDS")
    return parser.parse_args(argv)


def resolve_instance_id(settings: Settings, asked_port: int, bound_port: int) -> str:
    """``auto`` → ``HOST:PORT`` when the /metrics port was set and we got it: a port is bound by one live process
    at a time (so two instances on a host never share an id and fence each other), and the same instance restarted
    gets the same port back (a killed process's listening socket is gone at once). A free port picked by chance
    (0, or the asked one was busy) would differ at the next start: dynamic membership then."""
    value = settings.consumer_instance_id
    if value != "auto":
        return value
    return f"{socket.gethostname()}:{bound_port}" if asked_port and asked_port == bound_port else "off"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in (("batch_rows", args.batch_rows), ("batch_seconds", args.batch_seconds))
                 if v is not None}
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"consumers: {exc}", file=sys.stderr)
        return 2
    logs.setup(args.worker, settings.log_level)
    # a crash (or a hang: `kill -USR1 PID`) prints every thread's Python stack to stderr, next to the log
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    # imported here so `--help` works without the I/O libraries
    from .clickhouse_io import ClickHouseStore
    from .kafka_io import dead_letters
    from .worker import Worker

    port = settings.consumer_metrics_port if args.metrics_port is None else args.metrics_port
    bound = metrics.serve(port, args.metrics_host)
    log.info("metrics listening", extra={"port": bound, "url": f"http://{args.metrics_host}:{bound}/metrics"})
    settings = dataclasses.replace(settings, consumer_instance_id=resolve_instance_id(settings, port, bound))
    log.info("group membership", extra={"instance_id": settings.consumer_instance_id})
    processor = WORKERS[args.worker](settings)
    try:
        worker = Worker(settings, processor, ClickHouseStore(settings), dead_letters(settings))
    except SettingsError as exc:  # the configured Kafka client is not installed
        print(f"consumers: {exc}", file=sys.stderr)
        return 2
    memory_policy()
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
