"""WSGI entry point for any server: ``gunicorn ingest_gateway.wsgi:app`` (``python -m ingest_gateway serve`` is
the supported way: it also sets up metrics across workers and flushes the producer on shutdown)."""

from eventpipe.settings import Settings
from ingest_gateway.server import build_app

app = build_app(Settings.from_env())
