"""The Zidium actions besides JoinEvents (SPEC §1.2): components, SendEvent, GetEcho, GetServerTime.

Pure modules — ``wire`` (dates, fields, GUIDs), ``components`` (deterministic ids, DTOs, records), ``send_event``
(Zidium's server-side derivations) — plus ``directory``, the one that reads components back from ClickHouse.
The Falcon resource that dispatches to them is ``ingest_gateway.resources.joins``.
"""
