"""Command line of the gateway.

    python -m ingest_gateway serve                       # run the gateway (foreground, gunicorn)
    python -m ingest_gateway keys create --account NAME  # print a new key for NAME (shown once)
    python -m ingest_gateway keys list                   # ids, accounts, dates; never keys
    python -m ingest_gateway keys revoke KEY_ID
    python -m ingest_gateway keys ensure-demo PATH       # a working key of account "demo" in PATH
    python -m ingest_gateway openapi                     # print the OpenAPI document (docs/openapi.json)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from eventpipe.settings import Settings, SettingsError


def _ensure_demo(settings: Settings, path: Path) -> str:
    """Make sure ``path`` holds a key of account ``demo`` that the key store accepts; returns what was done."""
    from .keystore import KeyStore, create_key

    if path.exists():
        existing = path.read_text(encoding="utf-8").strip()
        if existing and KeyStore(settings.keys_path).account_for(existing) == "demo":
            return f"demo key in {path} is valid"
    key, entry = create_key(settings.keys_path, "demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    return f"created demo key {entry.id}, written to {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest_gateway", description="eventpipe ingest gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gateway in the foreground (gunicorn, gthread)")
    sub.add_parser("openapi", help="print the OpenAPI document the gateway serves at /openapi.json")
    keys = sub.add_parser("keys", help="manage API keys (stored hashed in EVENTPIPE_KEYS_FILE)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key for an account and print it (once)")
    create.add_argument("--account", required=True)
    ksub.add_parser("list", help="list keys (ids, accounts, dates; never the keys)")
    revoke = ksub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    demo = ksub.add_parser("ensure-demo", help="make sure PATH holds a valid key of account demo")
    demo.add_argument("path", type=Path)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "serve":
        from .server import serve

        try:
            serve(settings)
        except SettingsError as exc:  # the configured Kafka client is not installed
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "openapi":
        import json

        from .openapi import document
        from eventpipe.contract import load_event_types

        print(json.dumps(document(settings, load_event_types(settings.event_types_file)), indent=2))
        return 0

    from .keystore import KeyStoreError, create_key, read_entries, revoke_key

    try:
        if args.keys_command == "create":
            key, entry = create_key(settings.keys_path, args.account)
            print(key)
            print(f"created key {entry.id} for account {entry.account} in {settings.keys_path}; "
                  "it is shown only now", file=sys.stderr)
        elif args.keys_command == "list":
            for e in read_entries(settings.keys_path):
                status = "active" if e.active else f"revoked {e.revoked_at}"
                print(f"{e.id}\t{e.account}\t{e.created_at}\t{status}")
        elif args.keys_command == "revoke":
            entry = revoke_key(settings.keys_path, args.key_id)
            print(f"revoked key {entry.id} of account {entry.account}", file=sys.stderr)
        elif args.keys_command == "ensure-demo":
            print(_ensure_demo(settings, args.path), file=sys.stderr)
    except KeyStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
