"""Build the Java programs of tests/java once per test session with Maven (dependencies cached in ~/.m2).

Nothing is skipped: without Maven or Java the tests that need them fail and say what to install.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from eventpipe.settings import REPO_ROOT

JAVA_DIR = REPO_ROOT / "tests" / "java"
MISSING = ("{tool} is not on PATH: the Java interop tests build tests/java with Maven and run it on Java 17 "
           "(Debian: apt-get install maven openjdk-17-jdk-headless; `make run` installs both)")


def build() -> tuple[str, float]:
    """Compile tests/java and resolve its class path. Returns (class path, seconds it took).

    Blocks (Maven; the first run downloads the dependencies from Maven Central); raises RuntimeError."""
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise RuntimeError(MISSING.format(tool=tool))
    started = time.monotonic()
    cp_file = JAVA_DIR / "target" / "classpath.txt"
    result = subprocess.run(["mvn", "-B", "-q", "compile", "dependency:build-classpath",
                             f"-Dmdep.outputFile={cp_file}"], cwd=JAVA_DIR, capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"mvn failed building {JAVA_DIR}:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    classpath = f"{JAVA_DIR / 'target' / 'classes'}:{cp_file.read_text().strip()}"
    return classpath, time.monotonic() - started


def run(classpath: str, main: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of the programs; blocks until it exits (raises subprocess.TimeoutExpired)."""
    return subprocess.run(["java", "-cp", classpath, f"io.eventpipe.interop.{main}", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=JAVA_DIR)


def schema_dir() -> Path:
    return REPO_ROOT / "schemas" / "avro"
