"""Idempotent creation of eventpipe's topics with the configured partition count, replication factor and
``min.insync.replicas`` (the latter only set on the topic when replicated, so a single broker's topics are as
they always were)."""

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
    rf = settings.topic_replication_factor
    configs = {"min.insync.replicas": str(settings.topic_min_insync_replicas)} if rf > 1 else {}
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        brokers = len(admin.describe_cluster()["brokers"]) if missing else 0
        if missing and rf > brokers:  # checked before creating any, so no topic is left half-made
            raise DeployError(f"topics: EVENTPIPE_TOPIC_REPLICATION_FACTOR={rf} but Kafka at {settings.kafka_bootstrap} "
                              f"has {brokers} broker(s); set it to at most {brokers}, or start more brokers.")
        created = []
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, settings.topic_partitions, rf, topic_configs=configs)],
                                    timeout_ms=10_000)
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it in between: that is the outcome we wanted
        if created:
            say(f"topics: created {', '.join(created)} ({settings.topic_partitions} partitions each"
                + (f", replication factor {rf}, min.insync.replicas {settings.topic_min_insync_replicas})" if rf > 1
                   else ")"))
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
