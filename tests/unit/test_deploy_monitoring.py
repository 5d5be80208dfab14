"""The monitoring files hang together: the Prometheus config make run writes, the compose config, the Grafana
provisioning and the dashboard. (promtool and a running Prometheus check the rest: tests/integration.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from deploy import prometheus
from eventpipe.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
GRAFANA = prometheus.MONITORING / "grafana"


def test_make_run_scrapes_the_gateway_and_the_four_workers_at_their_ports() -> None:
    settings = Settings.from_env({"EVENTPIPE_HTTP_PORT": "18080", "EVENTPIPE_CONSUMER_METRICS_PORT": "19101",
                                  "EVENTPIPE_HTTP_HOST": "0.0.0.0"})
    assert prometheus.targets(settings) == {
        "gateway": ["127.0.0.1:18080"],  # a gateway on every address is scraped on loopback
        "consumers": ["127.0.0.1:19101", "127.0.0.1:19102", "127.0.0.1:19103", "127.0.0.1:19104",
                      "127.0.0.1:19105"]}


def test_the_written_config_loads_the_rules_and_listens_on_loopback_only(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), home=str(tmp_path), prometheus_port=19090)
    config = yaml.safe_load(prometheus.write_config(settings).read_text())
    assert config["rule_files"] == [str(prometheus.ALERT_RULES)]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"gateway", "consumers"}
    argv = prometheus.service(settings).argv
    assert "--web.listen-address=127.0.0.1:19090" in argv
    assert f"--storage.tsdb.path={tmp_path / 'prometheus' / 'data'}" in argv


def test_another_prometheus_host_means_an_external_one() -> None:
    assert Settings().local_prometheus
    assert not Settings.from_env({"EVENTPIPE_PROMETHEUS_HOST": "prometheus.internal"}).local_prometheus


def test_compose_prometheus_scrapes_every_compose_worker_and_loads_the_rules() -> None:
    config = yaml.safe_load((prometheus.MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]  # relative to the config: the folder is mounted whole
    scraped = {t.split(":")[0] for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    ours = {name for name, svc in COMPOSE["services"].items() if "build" in svc and name != "init"}
    assert scraped == ours
    service = COMPOSE["services"]["prometheus"]
    assert "./deploy/monitoring:/etc/eventpipe:ro" in service["volumes"]
    assert "--config.file=/etc/eventpipe/prometheus.yml" in service["command"]


def test_compose_grafana_mounts_files_that_exist_and_the_dashboard_uses_the_provisioned_source() -> None:
    for volume in COMPOSE["services"]["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO_ROOT / source).exists(), source
    source_uid = yaml.safe_load((GRAFANA / "datasources.yml").read_text())["datasources"][0]["uid"]
    dashboard = json.loads((GRAFANA / "eventpipe.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source_uid, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_the_dashboard_has_the_views_the_operator_needs_without_overlaps() -> None:
    panels = json.loads((GRAFANA / "eventpipe.json").read_text())["panels"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for view in ("by route and status", "by api and outcome", "publish latency", "lag per worker and partition",
                 "committed per second", "rows written", "dead letters by reason", "open sessions and join windows",
                 "watermark delay"):
        assert view in titles, view
    cells = set()
    for p in panels:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    assert len({p["id"] for p in panels}) == len(panels)
