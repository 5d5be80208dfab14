"""The local Prometheus: Debian's package when absent, scraping the gateway and every worker, loopback only.

Its config is written to ``.local/prometheus/prometheus.yml`` on every start (the targets follow the settings)
and loads the alert rules of ``deploy/monitoring/alerts.yml``; its data lives under ``.local/prometheus/data``.
Prometheus is optional: when it is missing and cannot be installed, ``make run`` says so once and goes on.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from consumers.__main__ import METRICS_PORT_OFFSET
from eventpipe.settings import Settings

from . import apt, procs
from .procs import Service, say

MONITORING = Path(__file__).resolve().parent / "monitoring"
ALERT_RULES = MONITORING / "alerts.yml"
SCRAPE_INTERVAL_S = 10.0


def binary(name: str = "prometheus") -> str | None:
    """The path of ``prometheus`` (or ``promtool``) on PATH, or None."""
    return shutil.which(name)


def install() -> str:
    """Install Debian's ``prometheus`` package (server and promtool) if it is missing; the server's path.

    Blocks (minutes). Raises DeployError (see ``apt.install``) when it cannot install."""
    return apt.ensure_binary(
        "prometheus", "Prometheus", lambda: binary() if binary("promtool") else None, ["prometheus"],
        "or install Prometheus yourself, or point EVENTPIPE_PROMETHEUS_HOST at a Prometheus server; the metrics "
        "stay on each process's /metrics meanwhile.")


def url(settings: Settings) -> str:
    return f"http://{settings.prometheus_host}:{settings.prometheus_port}"


def targets(settings: Settings) -> dict[str, list[str]]:
    """Scrape targets by job: the gateway and the four workers, at the addresses ``make run`` gives them."""
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    workers = sorted(METRICS_PORT_OFFSET, key=METRICS_PORT_OFFSET.get)
    return {"gateway": [f"{host}:{settings.http_port}"],
            "consumers": [f"127.0.0.1:{settings.consumer_metrics_port + METRICS_PORT_OFFSET[w]}" for w in workers]}


def config_text(jobs: dict[str, Sequence[str]], rule_files: Sequence[Path], scrape_interval_s: float) -> str:
    """A prometheus.yml scraping ``jobs`` (job name → host:port targets) and loading ``rule_files``."""
    lines = ["# Written by deploy/prometheus.py on every start; edit the settings, not this file.",
             "global:", f"  scrape_interval: {scrape_interval_s:g}s", f"  evaluation_interval: {scrape_interval_s:g}s",
             f"rule_files: {json.dumps([str(p) for p in rule_files])}", "scrape_configs:"]
    for job, addresses in jobs.items():
        lines += [f"  - job_name: {job}", f"    static_configs: [{{targets: {json.dumps(list(addresses))}}}]"]
    return "\n".join(lines) + "\n"


def _home(settings: Settings) -> Path:
    return settings.home_path / "prometheus"


def write_config(settings: Settings, jobs: dict[str, Sequence[str]] | None = None,
                 scrape_interval_s: float = SCRAPE_INTERVAL_S) -> Path:
    """Write HOME/prometheus/prometheus.yml (default jobs: ``targets(settings)``); returns its path."""
    home = _home(settings)
    (home / "data").mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(config_text(jobs or targets(settings), [ALERT_RULES], scrape_interval_s))
    return config


def answers(settings: Settings, timeout_s: float = 2.0) -> bool:
    """True when Prometheus says it is ready (``/-/ready``). Blocks up to ``timeout_s``."""
    try:
        with urllib.request.urlopen(f"{url(settings)}/-/ready", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def service(settings: Settings) -> Service:
    home = _home(settings)
    config = home / "prometheus.yml"
    return Service(
        name="prometheus",
        argv=[binary() or "prometheus", f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
              f"--web.listen-address=127.0.0.1:{settings.prometheus_port}", "--storage.tsdb.retention.time=15d",
              "--web.enable-lifecycle"],  # POST /-/reload picks up a rewritten config without a restart
        run_dir=settings.home_path / "run", log_file=home / "prometheus.log",
        marker=str(config), ready=lambda: answers(settings), ready_timeout_s=60.0, cwd=home,
        ports=(settings.prometheus_port,),
        what_to_do="set EVENTPIPE_PROMETHEUS_PORT to another port (the pipeline itself is up; run `make run` again)")


def start(settings: Settings) -> bool:
    """Install when needed, write the config and start the local server; True if started now.

    Blocks until it is ready. Raises DeployError."""
    install()
    write_config(settings)
    started = procs.start(service(settings))
    if not started:
        reload(settings)  # already running: make it read the config just written
    return started


def reload(settings: Settings) -> None:
    """Ask the running server to re-read its config and rules. Blocks briefly; a failure is only reported."""
    request = urllib.request.Request(f"{url(settings)}/-/reload", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except (urllib.error.URLError, OSError) as exc:  # transient, and the old config keeps working: report only
        say(f"prometheus: could not reload its config ({exc}); `make stop && make run` restarts it")


def stop(settings: Settings) -> bool:
    return procs.stop(service(settings))
