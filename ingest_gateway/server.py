"""Serving the gateway with gunicorn (gthread, see ``worker.py``): ``python -m ingest_gateway serve``.

The master process stays in the foreground.  Each worker builds its own app — and so its own Kafka producer —
after the fork (``load()`` runs in the worker).  SIGTERM: the workers stop accepting, finish the requests
in flight (up to the graceful timeout) and flush their producer in ``worker_exit``.  SIGHUP: gunicorn replaces
the workers gracefully, which also re-reads the key file and the event types.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from eventpipe.settings import Settings

log = logging.getLogger(__name__)

_worker_publisher = None  # the Kafka publisher of this worker process, flushed on exit


def build_app(settings: Settings, multiprocess_dir: str | None = None):
    """The app with the real collaborators: key file, Kafka publisher, components read from ClickHouse (connected
    on first use). Blocks on file reads only."""
    global _worker_publisher
    from .app import create_app
    from .keystore import KeyStore
    from .metrics import Metrics
    from .publisher import make_publisher
    from .zidium.directory import ClickHouseDirectory

    publisher = make_publisher(settings)
    _worker_publisher = publisher
    return create_app(settings, KeyStore(settings.keys_path), publisher, Metrics(multiprocess_dir),
                      directory=ClickHouseDirectory(settings))


def _worker_exit(server: Any, worker: Any) -> None:
    if _worker_publisher is not None:
        _worker_publisher.close()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class GatewayServer(BaseApplication):
    def __init__(self, settings: Settings, multiprocess_dir: str | None) -> None:
        self.settings = settings
        self.multiprocess_dir = multiprocess_dir
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": f"{s.http_host}:{s.http_port}",
            "workers": s.gateway_workers,
            "threads": s.gateway_threads,
            # gthread whose event loop reads each request before a thread serves it, with read deadlines.
            "worker_class": "ingest_gateway.worker.GatewayWorker",
            "graceful_timeout": max(10, int(s.publish_timeout_s * 2) + 5),
            "timeout": max(30, int(s.publish_timeout_s * 3)),
            "keepalive": 5,
            "proc_name": "eventpipe-gateway",
            "accesslog": None,
            "errorlog": "-",
            "loglevel": s.log_level.lower(),
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
            # Requests bigger than this are refused by the app (413); let the request line/headers be normal.
            "limit_request_line": 8190,
            # gunicorn's control socket is one fixed path per user: two gateways (or test runs) would collide.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        return build_app(self.settings, self.multiprocess_dir)


def serve(settings: Settings) -> None:
    """Run the gateway in the foreground until SIGTERM (graceful) or SIGINT (quick). Blocks; exits on a busy port."""
    metrics_dir = Path(settings.home) / "run" / f"gateway-metrics-{settings.http_port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    # prometheus-client picks its value store when first imported: set the directory before anything imports it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Fail fast in the master on configuration errors instead of in every worker.
    from .keystore import KeyStore
    from eventpipe.contract import load_event_types

    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    from .publisher import make_publisher

    load_event_types(settings.event_types_file)
    KeyStore(settings.keys_path)
    make_publisher(settings)  # the configured Kafka client imports (it connects only in the workers)
    log.info("gateway on http://%s:%s (%d workers x %d threads), Kafka %s via %s", settings.http_host,
             settings.http_port, settings.gateway_workers, settings.gateway_threads, settings.kafka_bootstrap,
             settings.kafka_client)
    GatewayServer(settings, str(metrics_dir)).run()
