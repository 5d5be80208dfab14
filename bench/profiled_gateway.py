"""The gateway with pyinstrument around every request (``make bench`` with ``--profile``).

``python -m bench.profiled_gateway OUTDIR`` serves exactly what ``python -m ingest_gateway serve`` serves (same
settings, same app, same gunicorn options); each worker profiles each request in the thread that handles it,
combines the sessions and, when it exits, writes ``OUTDIR/gateway-PID.txt`` (call tree and flat list).
kafka-python's two background threads (the producer's ``Sender`` and the network selector's I/O loop) are
profiled too, each into ``OUTDIR/gateway-PID-THREAD.txt`` when it ends (the producer is closed at worker exit).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

from eventpipe.settings import Settings

OUT: Path | None = None
_lock = threading.Lock()
_session: Any = None


class ProfiledApp:
    """WSGI middleware: one pyinstrument profiler per request, all sessions combined."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        global _session
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        try:
            return list(self.app(environ, start_response))
        finally:
            session = profiler.stop()
            with _lock:
                _session = session if _session is None else type(session).combine(_session, session)


def write_profile() -> None:
    import os

    with _lock:
        session = _session
    if session is None or OUT is None:
        return
    _render(session, OUT / f"gateway-{os.getpid()}-requests.txt")


def _render(session: Any, path: Path) -> None:
    from pyinstrument.renderers import ConsoleRenderer

    tree = ConsoleRenderer(unicode=False, color=False, processor_options={"filter_threshold": 0.01}).render(session)
    flat = ConsoleRenderer(unicode=False, color=False, flat=True, time="percent_of_total").render(session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tree + "\n\n=== flat (self time) ===\n" + flat)


def _profiled_thread(cls: type, method: str, label: str) -> None:
    """Run ``cls.method`` (a thread's whole body) under its own profiler; write the report when it returns."""
    original = getattr(cls, method)

    def body(self: Any, *args: Any, **kwargs: Any) -> Any:
        import os

        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        try:
            return original(self, *args, **kwargs)
        finally:
            session = profiler.stop()
            if OUT is not None:
                _render(session, OUT / f"gateway-{os.getpid()}-{label}-{id(self):x}.txt")

    setattr(cls, method, body)


def main() -> int:
    global OUT
    OUT = Path(sys.argv[1])
    from kafka.net.selector import NetworkSelector
    from kafka.producer.sender import Sender

    _profiled_thread(Sender, "run", "sender")
    _profiled_thread(NetworkSelector, "run_forever", "io")
    from ingest_gateway import server

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper())
    original_exit = server._worker_exit

    class Profiled(server.GatewayServer):
        def load_config(self) -> None:
            super().load_config()

            def worker_exit(srv: Any, worker: Any) -> None:
                write_profile()
                original_exit(srv, worker)

            self.cfg.set("worker_exit", worker_exit)

        def load(self) -> Any:
            return ProfiledApp(super().load())

    # what server.serve does, with the profiled application class
    import os
    import shutil

    metrics_dir = Path(settings.home) / "run" / f"gateway-metrics-{settings.http_port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    Profiled(settings, str(metrics_dir)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
