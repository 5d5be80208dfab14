"""/openapi.json stays true to the routes; /healthz, /readyz and /metrics answer."""

from __future__ import annotations

import falcon.inspect

from .helpers import FORM, KEY, event


def routes_of(app) -> set[tuple[str, str]]:
    pairs = set()
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if not method.internal:
                pairs.add((route.path, method.method.lower()))
    return pairs


def test_openapi_document_matches_the_routes(client) -> None:
    doc = client.simulate_get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == routes_of(client.app)


def test_openapi_documents_every_v3_code_and_the_configured_types(client, gw_settings) -> None:
    doc = client.simulate_get("/openapi.json").json
    responses = doc["paths"]["/v3/events"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "408", "413", "415", "422", "503"}
    for route in ("/v3/events", "/api/{action}"):  # compressed bodies on both routes (SPEC §1.1)
        params = doc["paths"][route]["post"]["parameters"]
        assert {"gzip", "deflate"} <= set(next(p for p in params if p["name"] == "Content-Encoding")["schema"]["enum"])
    assert "APPSTART" in doc["components"]["schemas"]["Event"]["properties"]["type"]["enum"]
    assert doc["components"]["schemas"]["Event"]["properties"]["entities"]["maxItems"] == gw_settings.max_entities


def test_openapi_references_all_resolve(client) -> None:
    doc = client.simulate_get("/openapi.json").json

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    found = set(refs(doc))
    assert found
    for ref in found:
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict)


def test_healthz_and_readyz(client, publisher) -> None:
    assert client.simulate_get("/healthz").status_code == 200
    assert client.simulate_get("/readyz").status_code == 200
    publisher.is_ready = False
    assert client.simulate_get("/readyz").status_code == 503


def test_metrics_count_requests_events_and_publish_latency(client) -> None:
    import json
    from urllib.parse import urlencode

    client.simulate_post("/v3/events", body=urlencode({"data": json.dumps([event(), event()])}),
                         headers={**FORM, "X-Api-Key": KEY})
    client.simulate_post("/v3/events", body=urlencode({"data": json.dumps([event(type="NOPE"), event()])}),
                         headers={**FORM, "X-Api-Key": KEY})
    text = client.simulate_get("/metrics").text
    assert 'eventpipe_gateway_events_accepted_total{api="v3"} 2.0' in text
    assert 'eventpipe_gateway_events_rejected_total{api="v3",reason="type:enum"} 1.0' in text
    assert 'eventpipe_gateway_events_rejected_total{api="v3",reason="batch_refused"} 1.0' in text
    assert 'eventpipe_gateway_requests_total{method="POST",route="/v3/events",status="422"} 1.0' in text
    assert 'eventpipe_gateway_publish_latency_seconds_count{api="v3",outcome="ok"} 1.0' in text
    assert "eventpipe_gateway_requests_in_flight" in text


def test_unknown_paths_and_methods_are_plain_http_errors(client) -> None:
    assert client.simulate_get("/nope").status_code == 404
    assert client.simulate_get("/v3/events").status_code == 405
    assert client.simulate_get("/api/JoinEvents").status_code == 405


def test_the_static_copy_in_docs_is_current() -> None:
    """docs/openapi.json is `python -m ingest_gateway openapi` with default settings; regenerate it when this fails."""
    import json

    from eventpipe.settings import REPO_ROOT, Settings
    from ingest_gateway.openapi import document
    from eventpipe.contract import load_event_types

    defaults = Settings.from_env({})
    expected = document(defaults, load_event_types(defaults.event_types_file))
    assert json.loads((REPO_ROOT / "docs" / "openapi.json").read_text()) == expected
