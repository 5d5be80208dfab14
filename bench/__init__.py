"""``make bench``: eventpipe beside its anchors on one machine (see ``bench/__main__.py`` and docs/benchmark.md)."""
