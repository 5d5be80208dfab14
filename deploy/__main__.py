"""``python -m deploy up|down|status|infra|migrate|topics|test|cluster-up|cluster-down|cluster-test`` — what the
Makefile runs."""

from __future__ import annotations

import argparse
import logging
import sys

from eventpipe.settings import Settings, SettingsError

from . import cluster, stack
from .migrate import migrate
from .procs import DeployError
from .topics import ensure_topics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description="Run eventpipe's local stack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="infrastructure, demo key, gateway and workers (make run)")
    sub.add_parser("infra", help="Kafka and ClickHouse up, topics and tables created")
    sub.add_parser("down", help="stop everything eventpipe started (make stop)")
    sub.add_parser("status", help="what runs (make status)")
    sub.add_parser("migrate", help="apply schemas/clickhouse/*.sql not yet applied")
    sub.add_parser("topics", help="create the topics that do not exist yet")
    test = sub.add_parser("test", help="infrastructure up, pytest, stop what was started (make test)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    sub.add_parser("cluster-up", help="the local cluster: 3 Kafka brokers, ZooKeeper, 2x2 ClickHouse, gateway, "
                   "workers (make cluster-up)")
    sub.add_parser("cluster-down", help="stop everything of the local cluster (make cluster-down)")
    cluster_test = sub.add_parser("cluster-test", help="cluster servers up, pytest tests/cluster, stop what was "
                                  "started (make test-cluster)")
    cluster_test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # readiness polls would log every refused connect
    try:
        settings = Settings.from_env()
        if args.command == "up":
            stack.up(settings)
        elif args.command == "infra":
            stack.infra_up(settings)
        elif args.command == "down":
            stack.down(settings)
        elif args.command == "status":
            return stack.status(settings)
        elif args.command == "migrate":
            migrate(settings)
        elif args.command == "topics":
            ensure_topics(settings)
        elif args.command == "test":
            return stack.run_tests(settings, [a for a in args.pytest_args if a != "--"])
        elif args.command == "cluster-up":
            cluster.up(settings)
        elif args.command == "cluster-down":
            cluster.down(settings)
        elif args.command == "cluster-test":
            return cluster.run_tests(settings, [a for a in args.pytest_args if a != "--"])
    except (DeployError, SettingsError) as exc:
        print(f"[eventpipe] ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
