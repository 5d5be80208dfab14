"""The HTTP ingest gateway: authenticates, validates and publishes v3 events and Zidium join records to Kafka.

Layout (one concern per module):

- ``validation`` — pure rules of SPEC §1.1/§1.2; returns errors as data.
- ``records`` — deterministic ids, Kafka keys and the Avro record dicts.
- ``bodies`` / ``jsontext`` — reading and parsing request bodies within the limits; strict JSON.
- ``keystore`` — hashed API keys → accounts, reloadable.
- ``publisher`` — the one module that imports kafka-python's producer.
- ``errors`` / ``app`` / ``resources`` — Falcon wiring: ``create_app(settings, keystore, publisher)``.
- ``metrics`` / ``openapi`` — the Prometheus collectors and the OpenAPI document.
- ``server`` / ``__main__`` — gunicorn and the command line.
"""
