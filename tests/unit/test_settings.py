import pytest

from eventpipe.settings import Settings, SettingsError, markdown_table


def test_defaults_are_the_local_stack() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092" and s.local_kafka
    assert s.clickhouse_host == "127.0.0.1" and s.local_clickhouse
    assert s.topics == ("eventpipe.events", "eventpipe.joins", "eventpipe.deadletter", "eventpipe.components")
    assert s.topic_partitions == 6 and s.publish_timeout_s == 5.0


def test_env_values_are_typed_and_external_services_recognised() -> None:
    s = Settings.from_env({"EVENTPIPE_KAFKA_BOOTSTRAP": "kafka:9092", "EVENTPIPE_TOPIC_PARTITIONS": "3",
                           "EVENTPIPE_PUBLISH_TIMEOUT_S": "0.5", "EVENTPIPE_CLICKHOUSE_HOST": "ch"})
    assert not s.local_kafka and not s.local_clickhouse
    assert s.topic_partitions == 3 and s.publish_timeout_s == 0.5


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="EVENTPIPE_TOPIC_PARTITIONS='six'"):
        Settings.from_env({"EVENTPIPE_TOPIC_PARTITIONS": "six"})


def test_to_env_round_trips() -> None:
    s = Settings.from_env({"EVENTPIPE_TOPIC_PREFIX": "x", "EVENTPIPE_BATCH_SECONDS": "0.25"})
    assert Settings.from_env(s.to_env()) == s


def test_the_readme_configuration_table_is_the_current_one() -> None:
    from eventpipe.settings import README_BEGIN, README_END, REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert table == markdown_table(), "README is stale: run `.venv/bin/python -m eventpipe.settings --write-readme`"
