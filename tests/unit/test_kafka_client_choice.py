"""EVENTPIPE_KAFKA_CLIENT: one choice per process, made where it is assembled; a wrong or broken choice stops
start-up with one message naming the variable and the choices."""

from __future__ import annotations

import builtins
import subprocess
import sys

import pytest

from consumers import kafka_io
from eventpipe.settings import KAFKA_CLIENTS, REPO_ROOT, Settings, SettingsError
from ingest_gateway.publisher import make_publisher


def test_the_default_client_is_librdkafka() -> None:
    assert Settings.from_env({}).kafka_client == "confluent-kafka" == KAFKA_CLIENTS[0]


def test_an_unknown_client_names_the_variable_and_the_choices() -> None:
    with pytest.raises(SettingsError, match=r"EVENTPIPE_KAFKA_CLIENT='librdkafka'.*confluent-kafka, kafka-python"):
        Settings.from_env({"EVENTPIPE_KAFKA_CLIENT": "librdkafka"})


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_each_boundary_builds_the_chosen_client(client: str) -> None:
    s = Settings.from_env({"EVENTPIPE_KAFKA_CLIENT": client})
    expected = {"confluent-kafka": "Confluent", "kafka-python": "KafkaPython"}[client]
    assert type(make_publisher(s)).__name__.startswith(expected)
    assert kafka_io.source_factory(s).__name__.startswith(expected)
    assert type(kafka_io.dead_letters(s)).__name__.startswith(expected)


def test_a_missing_confluent_kafka_install_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_confluent(name, *args, **kwargs):
        if name.startswith("confluent_kafka"):
            raise ImportError("No module named 'confluent_kafka'")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.startswith(("confluent_kafka", "ingest_gateway.publisher_confluent",
                                                           "consumers.confluent_io"))]:
        monkeypatch.delitem(sys.modules, module)
    import consumers
    import ingest_gateway

    for package, name in ((consumers, "confluent_io"), (ingest_gateway, "publisher_confluent")):
        monkeypatch.delattr(package, name, raising=False)  # `from . import x` would find the attribute
    monkeypatch.setattr(builtins, "__import__", no_confluent)
    s = Settings.from_env({})
    for build in (make_publisher, kafka_io.source_factory, kafka_io.dead_letters):
        with pytest.raises(SettingsError, match="EVENTPIPE_KAFKA_CLIENT=confluent-kafka .*kafka-python"):
            build(s)


@pytest.mark.parametrize("argv", [["-m", "consumers", "sessions"], ["-m", "ingest_gateway", "serve"]])
def test_processes_refuse_to_start_with_an_unknown_client(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                         env={"EVENTPIPE_KAFKA_CLIENT": "nope", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert "EVENTPIPE_KAFKA_CLIENT='nope'" in out.stderr and "Traceback" not in out.stderr
