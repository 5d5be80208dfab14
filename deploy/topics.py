"""Idempotent creation of eventpipe's topics with the configured partition count."""

from __future__ import annotations

from eventpipe.settings import Settings

from .procs import DeployError, say


def ensure_topics(settings: Settings, names: tuple[str, ...] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Blocks; raises DeployError."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    names = names or settings.topics
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    except (KafkaError, OSError) as exc:
        raise DeployError(f"topics: cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, settings.topic_partitions, 1)], timeout_ms=10_000)
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it in between: that is the outcome we wanted
        if created:
            say(f"topics: created {', '.join(created)} ({settings.topic_partitions} partitions each)")
        return created
    except KafkaError as exc:
        raise DeployError(f"topics: Kafka at {settings.kafka_bootstrap} refused topic creation: {exc}") from None
    finally:
        admin.close()


def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete topics (test clean-up). Missing ones are ignored."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=10_000)
    except KafkaError:
        pass  # clean-up only: a leftover topic does no harm
    finally:
        admin.close()
