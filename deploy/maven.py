"""Fetching a Java program's jars from Maven Central into the user's cache, once (Kafka, ZooKeeper)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .procs import DeployError, say


def fetch_jars(who: str, what: str, pom: Path, properties: dict[str, str], target: Path, main_jar: str,
               hint: str) -> Path:
    """``target`` (a directory of jars), filled by ``mvn dependency:copy-dependencies`` of ``pom`` the first time.

    ``main_jar`` is a file-name prefix that must be among the jars; ``hint`` ends error messages (how to do
    without). Blocks (a minute the first time). Raises DeployError. The caller makes sure Java and Maven exist."""
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    say(f"{who}: fetching {what} jars from Maven Central into {target.parent} (once)")
    log = target.parent / "maven.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        rc = subprocess.call(
            ["mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies",
             *(f"-D{k}={v}" for k, v in properties.items()), f"-DoutputDirectory={staging}",
             "-DincludeScope=runtime"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise DeployError(f"{who}: Maven could not fetch {what} (exit {rc}; log {log}):\n{tail}\n"
                          f"Check that Maven Central is reachable, {hint}")
    jars = list(staging.glob("*.jar"))
    if not any(j.name.startswith(main_jar) for j in jars):
        raise DeployError(f"{who}: Maven finished but no {main_jar} jar is in {staging}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    (target / ".complete").write_text(f"{len(jars)} jars\n")
    say(f"{who}: fetched {len(jars)} jars")
    return target
