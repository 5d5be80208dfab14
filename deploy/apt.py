"""Installing Debian packages that the local stack needs (ClickHouse, Java and Maven, Prometheus) with apt-get.

One code path for every package, so the messages are the same everywhere: not a Debian host, not root, or apt
failing each ends with one clear message naming the command to run and the way around it (``hint``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from .procs import DeployError, say

DEBIAN_MARKER = Path("/etc/debian_version")  # a module constant so tests can point it elsewhere

# A wanted package, or a tuple of alternatives: the first one `apt-cache policy` has a candidate for is installed
# (Java's package name carries its version, and which versions a release ships differs between releases).
Wanted = str | tuple[str, ...]


def install(who: str, why: str, packages: Sequence[Wanted], hint: str) -> list[str]:
    """``apt-get update`` then ``apt-get install`` the packages; returns the package names installed.

    ``who`` prefixes progress lines ("clickhouse"), ``why`` says what is missing ("ClickHouse is not installed"),
    ``hint`` is how to do without ("or point EVENTPIPE_CLICKHOUSE_HOST at …"). Blocks (minutes).
    Raises DeployError when this is not a Debian host with apt-get, when not root, or when apt-get fails.
    """
    spelled = " ".join(p if isinstance(p, str) else p[0] for p in packages)
    if not DEBIAN_MARKER.exists() or shutil.which("apt-get") is None:
        raise DeployError(f"{why}, and this is not a Debian host, so eventpipe cannot install it with apt-get. "
                          f"Install {spelled} yourself, {hint}")
    if os.geteuid() != 0:
        raise DeployError(f"{why}; installing {spelled} needs root: run "
                          f"`sudo apt-get update && sudo apt-get install {spelled}`, {hint}")
    say(f"{who}: {why}; installing {spelled} from Debian's packages")
    _run(who, ["apt-get", "update", "-q"], hint)
    names = [p if isinstance(p, str) else _first_available(who, p, hint) for p in packages]
    # --no-upgrade: a package already installed (an older Java beside the new one) is left exactly as it is
    _run(who, ["apt-get", "install", "-y", "-q", "--no-install-recommends", "--no-upgrade", *names], hint)
    return names


def ensure_binary(who: str, what: str, find: Callable[[], str | None], packages: Sequence[Wanted],
                  hint: str) -> str:
    """The path ``find()`` returns, installing ``packages`` first when it returns None (``what`` names the program
    in messages: "ClickHouse"). Blocks (minutes when installing). Raises DeployError as ``install`` does, or when
    the program is still not found afterwards."""
    found = find()
    if found:
        return found
    install(who, f"{what} is not installed", packages, hint)
    found = find()
    if not found:
        raise DeployError(f"{who}: apt-get finished but {what} is still not found; {hint}")
    say(f"{who}: installed {found}")
    return found


def _first_available(who: str, alternatives: Sequence[str], hint: str) -> str:
    for name in alternatives:
        if candidate(name) is not None:
            return name
    raise DeployError(f"{who}: apt has none of {', '.join(alternatives)}; install one of them yourself, {hint}")


def candidate(package: str) -> str | None:
    """The version ``apt-get install`` would install (``apt-cache policy``), or None. Blocks briefly."""
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    for line in out.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def _run(who: str, step: list[str], hint: str) -> None:
    say(f"{who}: {' '.join(step)}")
    out = subprocess.run(step, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-10:])
        raise DeployError(f"{who}: `{' '.join(step)}` failed (exit {out.returncode}):\n{tail}\nFix apt, {hint}")
