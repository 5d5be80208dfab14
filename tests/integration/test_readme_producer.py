"""The README's "Producing straight to Kafka" snippet works as printed and writes what the codec reads."""

from __future__ import annotations

import os
import re
import time

from eventpipe.codec import EVENT
from eventpipe.settings import REPO_ROOT, Settings


def test_the_readme_fastavro_producer_snippet(settings: Settings) -> None:
    from kafka import KafkaConsumer

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Producing straight to Kafka", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"eventpipe.events"', repr(settings.topic_events))
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # the snippet opens schemas/avro/event.avsc relative to the repository
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    consumer = KafkaConsumer(settings.topic_events, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=2000)
    found = []
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        found = [EVENT.decode(m.value) for m in consumer if m.key == b'["billing","a1b2c3d4e5","APPSTART"]']
    consumer.close()
    assert found and found[0]["account_id"] == "billing" and found[0]["source"] == "kafka"
