"""Falcon resources: one module per API (``v3``, ``joins``) and the operational endpoints (``ops``)."""
