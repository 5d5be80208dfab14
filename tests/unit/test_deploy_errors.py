"""Set-up installs what is missing from Debian's packages, or stops with one clear message naming what failed and
what to do. A fake host stands in: a PATH holding only fake `apt-get`, `apt-cache` (and `java`) scripts, a fake
/etc/debian_version and a faked uid."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import apt, clickhouse, kafka, prometheus, stack
from deploy.procs import DeployError
from eventpipe.settings import Settings

JAVA_17 = 'openjdk version "17.0.19" 2025-04-15'
JAVA_11 = 'openjdk version "11.0.25" 2024-10-15'


@dataclass
class FakeHost:
    bin: Path
    apt_log: Path

    def script(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def java(self, version_line: str) -> None:
        self.script("java", f"echo '{version_line}' >&2")

    def apt_runs(self) -> list[str]:
        return self.apt_log.read_text().splitlines() if self.apt_log.exists() else []


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    """A Debian host as root whose PATH has no java, mvn or clickhouse; apt knows openjdk-17 and installs
    whatever it is asked to as a script that prints its version (java) or nothing."""
    fake = FakeHost(tmp_path / "bin", tmp_path / "apt.log")
    fake.bin.mkdir()
    (tmp_path / "debian_version").write_text("12.11\n")
    monkeypatch.setattr(apt, "DEBIAN_MARKER", tmp_path / "debian_version")
    monkeypatch.setattr(apt.os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(fake.bin))
    fake.script("apt-cache", 'case "$2" in openjdk-17-jdk-headless|maven|clickhouse-*|prometheus) '
                             'echo "  Candidate: 1.0";; *) echo "  Candidate: (none)";; esac')
    # what the fake apt-get "installs": scripts made here, copied into the PATH by package name
    pool = FakeHost(tmp_path / "pool", tmp_path / "unused")
    pool.bin.mkdir()
    pool.java(JAVA_17)
    pool.script("mvn", "")
    pool.script("clickhouse-server", "")
    pool.script("prometheus", "")
    pool.script("promtool", "")
    fake.script("apt-get", f"""echo "$@" >> {fake.apt_log}
[ "$1" = install ] || exit 0
for p in "$@"; do case "$p" in
  openjdk-17-*) /bin/cp {pool.bin}/java {fake.bin}/;;
  maven) /bin/cp {pool.bin}/mvn {fake.bin}/;;
  clickhouse-server) /bin/cp {pool.bin}/clickhouse-server {fake.bin}/;;
  prometheus) /bin/cp {pool.bin}/prometheus {pool.bin}/promtool {fake.bin}/;;
esac; done""")
    monkeypatch.setattr(clickhouse, "SERVER_CANDIDATES", ("clickhouse-server",))
    return fake


# --- ClickHouse --------------------------------------------------------------------------------------------------
def test_a_missing_clickhouse_is_installed_with_apt(host: FakeHost) -> None:
    assert clickhouse.install() == str(host.bin / "clickhouse-server")
    assert host.apt_runs() == ["update -q",
                               "install -y -q --no-install-recommends --no-upgrade clickhouse-server clickhouse-client"]


def test_a_non_debian_host_is_told_to_install_clickhouse_or_point_elsewhere(
        host: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt, "DEBIAN_MARKER", tmp_path / "no-such-file")
    with pytest.raises(DeployError, match="not a Debian host.*EVENTPIPE_CLICKHOUSE_HOST"):
        clickhouse.install()
    assert host.apt_runs() == []


def test_without_root_the_install_command_is_spelled_out(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    with pytest.raises(DeployError, match="needs root.*sudo apt-get install clickhouse-server clickhouse-client`"):
        clickhouse.install()
    assert host.apt_runs() == []


def test_a_failing_apt_get_shows_its_output(host: FakeHost) -> None:
    host.script("apt-get", "echo 'E: Unable to locate package clickhouse-server' >&2; exit 100")
    with pytest.raises(DeployError, match="(?s)apt-get update -q` failed \\(exit 100\\).*Unable to locate package"
                                          ".*EVENTPIPE_CLICKHOUSE_HOST"):
        clickhouse.install()


# --- Java and Maven (Kafka) --------------------------------------------------------------------------------------
def test_missing_java_and_maven_are_installed_in_one_apt_run(host: FakeHost) -> None:
    kafka.ensure_java_and_maven(maven=True)
    assert host.apt_runs() == ["update -q",
                               "install -y -q --no-install-recommends --no-upgrade openjdk-17-jdk-headless maven"]
    assert kafka.java_major() == 17


def test_present_java_and_maven_need_no_apt(host: FakeHost) -> None:
    host.java(JAVA_17)
    host.script("mvn", "")
    kafka.ensure_java_and_maven(maven=True)
    assert host.apt_runs() == []


def test_cached_kafka_jars_need_java_but_not_maven(host: FakeHost) -> None:
    host.java(JAVA_17)
    kafka.ensure_java_and_maven(maven=False)
    assert host.apt_runs() == []


def test_the_java_package_is_the_first_one_apt_has(host: FakeHost) -> None:
    host.script("apt-cache", 'case "$2" in openjdk-21-jdk-headless) echo "  Candidate: 21.0.5";; '
                             '*) echo "  Candidate: (none)";; esac')
    host.script("mvn", "")
    with pytest.raises(DeployError, match="apt-get finished but `java` is still not on PATH"):
        kafka.ensure_java_and_maven(maven=True)  # the fake apt-get only knows how to make a java 17
    assert host.apt_runs()[-1] == "install -y -q --no-install-recommends --no-upgrade openjdk-21-jdk-headless"


def test_an_old_java_is_replaced(host: FakeHost) -> None:
    host.java(JAVA_11)
    kafka.ensure_java_and_maven(maven=False)
    assert host.apt_runs()[-1].endswith("openjdk-17-jdk-headless")
    assert kafka.java_major() == 17


def test_an_old_java_that_stays_selected_is_named_with_the_version_needed(host: FakeHost) -> None:
    host.java(JAVA_11)
    host.script("apt-get", "exit 0")  # installs, but the alternatives still point at Java 11
    with pytest.raises(DeployError, match="the `java` on PATH is Java 11 and Kafka needs Java 17\\+.*"
                                          "update-alternatives"):
        kafka.ensure_java_and_maven(maven=False)


def test_without_root_an_old_java_is_named_with_the_command_to_run(host: FakeHost,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    host.java('java version "1.8.0_392"')
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    with pytest.raises(DeployError, match="Kafka needs Java 17\\+ and the `java` on PATH is Java 8; installing "
                                          "openjdk-17-jdk-headless needs root: run `sudo apt-get update && sudo "
                                          "apt-get install openjdk-17-jdk-headless`, or point EVENTPIPE_KAFKA_BOOTSTRAP"):
        kafka.ensure_java_and_maven(maven=False)
    assert host.apt_runs() == []


def test_without_root_missing_java_and_maven_are_both_named(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    with pytest.raises(DeployError, match="`java` is not on PATH; fetching Kafka needs Maven and `mvn` is not on "
                                          "PATH; .*sudo apt-get install openjdk-17-jdk-headless maven`"):
        kafka.ensure_java_and_maven(maven=True)


def test_a_failing_apt_get_for_java_shows_its_output(host: FakeHost) -> None:
    host.script("apt-get", '[ "$1" = update ] && exit 0; echo "E: Sub-process /usr/bin/dpkg returned an error" >&2; '
                           "exit 100")
    with pytest.raises(DeployError, match="(?s)kafka: `apt-get install .*openjdk-17-jdk-headless` failed \\(exit 100\\)"
                                          ".*dpkg returned an error.*EVENTPIPE_KAFKA_BOOTSTRAP"):
        kafka.ensure_java_and_maven(maven=False)


def test_apt_without_any_of_the_java_packages_says_which_it_looked_for(host: FakeHost) -> None:
    host.script("apt-cache", 'echo "  Candidate: (none)"')
    with pytest.raises(DeployError, match="apt has none of openjdk-17-jdk-headless, .*default-jdk-headless"):
        kafka.ensure_java_and_maven(maven=False)


# --- Prometheus --------------------------------------------------------------------------------------------------
def test_a_missing_prometheus_is_installed_with_apt(host: FakeHost) -> None:
    assert prometheus.install() == str(host.bin / "prometheus")
    assert host.apt_runs()[-1] == "install -y -q --no-install-recommends --no-upgrade prometheus"


def test_prometheus_that_cannot_be_installed_is_said_once_and_the_pipeline_runs_without_it(
        host: FakeHost, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(prometheus, "start", lambda settings: pytest.fail("started without a prometheus binary"))
    stack.monitoring_up(Settings())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("[eventpipe] prometheus: not started, running without it (metrics stay on each "
                               "/metrics): Prometheus is not installed; installing prometheus needs root: run "
                               "`sudo apt-get update && sudo apt-get install prometheus`")
