"""API keys → accounts (SPEC §1.4).

The store is a JSON file (``settings.keys_path``)::

    {"version": 1, "keys": [{"id": "k_3f9a1c2b", "account": "demo", "sha256": "<hex>",
                             "created_at": "2026-11-23T19:40:00Z", "revoked_at": null}]}

Only SHA-256 digests of keys are stored.  Keys are 256-bit random tokens, so a fast hash is enough (there is
nothing to brute-force) and lets every request be checked in microseconds.  A lookup hashes the presented key,
finds the entry by digest and confirms it with ``hmac.compare_digest``; nothing about a stored key is learnt
from timing.  The gateway reloads the file when its modification time changes (checked at most once a second)
and on SIGHUP, so ``keys create``/``revoke`` take effect without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

KEY_PREFIX = "ep_"
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
MAX_KEY_CHARS = 256  # longer presented keys are refused without hashing


class KeyStoreError(ValueError):
    """The key file is unreadable or a command's argument is wrong (invalid input: fix the file or the call)."""


@dataclass(frozen=True)
class KeyEntry:
    id: str
    account: str
    sha256: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A fresh API key: ``ep_`` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_entries(path: Path) -> list[KeyEntry]:
    """All entries of the key file ([] when it does not exist). Blocks on the read; raises KeyStoreError."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:  # no keys yet: an empty store
        return []
    except (OSError, ValueError) as exc:  # invalid input: an unreadable or non-JSON file
        raise KeyStoreError(f"key file {path} cannot be read: {exc}") from None
    try:
        return [KeyEntry(**{k: item.get(k) for k in ("id", "account", "sha256", "created_at", "revoked_at")})
                for item in raw["keys"]]
    except (KeyError, TypeError, AttributeError) as exc:  # invalid input: JSON of the wrong shape
        raise KeyStoreError(f"key file {path} is not a key store: {exc}") from None


def write_entries(path: Path, entries: list[KeyEntry]) -> None:
    """Replace the key file atomically (write a temporary file, fsync, rename); mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps({"version": 1, "keys": [asdict(e) for e in entries]}, indent=2) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the key file between concurrent CLI calls."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def create_key(path: Path, account: str) -> tuple[str, KeyEntry]:
    """Add a key for ``account``; returns (the key, its entry). The key is never stored. Raises KeyStoreError."""
    if not ACCOUNT_NAME.match(account):
        raise KeyStoreError(f"account {account!r} must be 1-64 letters, digits, '.', '_' or '-' (starting with a "
                            "letter or digit)")
    key = new_key()
    with locked(path):
        entries = read_entries(path)
        used = {e.id for e in entries}
        key_id = "k_" + secrets.token_hex(4)
        while key_id in used:
            key_id = "k_" + secrets.token_hex(4)
        entry = KeyEntry(id=key_id, account=account, sha256=digest(key), created_at=_now_iso())
        write_entries(path, entries + [entry])
    return key, entry


def revoke_key(path: Path, key_id: str) -> KeyEntry:
    """Mark the key ``key_id`` revoked (it stops working at the gateway's next reload). Raises KeyStoreError."""
    with locked(path):
        entries = read_entries(path)
        for i, entry in enumerate(entries):
            if entry.id == key_id:
                if entry.active:
                    entries[i] = entry = KeyEntry(**{**asdict(entry), "revoked_at": _now_iso()})
                    write_entries(path, entries)
                return entry
    raise KeyStoreError(f"no key with id {key_id!r} in {path}")


class KeyStore:
    """The gateway's view of the key file: ``account_for(key)``, reloaded when the file changes. Thread-safe."""

    def __init__(self, path: Path, check_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_digest: dict[str, KeyEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.reload()

    @classmethod
    def from_keys(cls, keys: dict[str, str]) -> "KeyStore":
        """An in-memory store of ``{key: account}`` (tests, tools); never reloads."""
        store = cls.__new__(cls)
        store.path = Path("/nonexistent")
        store._check_interval_s = float("inf")
        store._clock = time.monotonic
        store._lock = threading.Lock()
        store._stamp = None
        store._next_check = float("inf")
        store._by_digest = {digest(k): KeyEntry(f"k_{i}", a, digest(k), _now_iso()) for i, (k, a) in
                            enumerate(keys.items())}
        return store

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:  # no file (yet): compared like any other state
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> None:
        """Read the file again. On an unreadable file the previous keys stay in force (logged); blocks on the read."""
        with self._lock:
            stamp = self._file_stamp()
            try:
                entries = read_entries(self.path)
            except KeyStoreError as exc:  # invalid input (a half-edited file): keep serving with the old keys
                log.error("%s; keeping the %d keys loaded before", exc, len(self._by_digest))
                self._stamp = stamp
                return
            self._by_digest = {e.sha256: e for e in entries if e.active}
            self._stamp = stamp
            log.info("loaded %d active API keys from %s", len(self._by_digest), self.path)

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._check_interval_s
        if self._file_stamp() != self._stamp:
            self.reload()

    def account_for(self, key: str | None) -> str | None:
        """The account of ``key``, or None for a missing, unknown or revoked key. Never raises."""
        self._maybe_reload()
        if not key or len(key) > MAX_KEY_CHARS:
            return None
        presented = digest(key)
        entry = self._by_digest.get(presented)
        if entry is None or not hmac.compare_digest(entry.sha256, presented):
            return None
        return entry.account

    def accounts(self) -> set[str]:
        return {e.account for e in self._by_digest.values()}
