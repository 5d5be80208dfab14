"""The OpenAPI 3 document of the gateway, served at ``/openapi.json``.

A unit test compares its paths and methods with the app's routes, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from eventpipe.settings import Settings

from eventpipe.contract import MESSAGE_MAX, SESSION_MAX, SESSION_MIN, VERSION_MAX

from .validation import CLIENT_ID_MAX


def _v3_error(description: str, code: int) -> dict[str, Any]:
    return {"description": f"{description} (error.code {code})",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V3Error"}}}}


def _zidium(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ZidiumResponse"}}}}


def document(settings: Settings, event_types: frozenset[str]) -> dict[str, Any]:
    """The OpenAPI document for these settings (limits and the configured event types are filled in)."""
    guid = {"type": "string", "format": "uuid"}
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
    encoding_param = {"name": "Content-Encoding", "in": "header", "required": False,
                      "description": "`gzip` or `deflate` (zlib or raw) to send the body compressed; the size limit "
                                     f"({settings.max_body_bytes} bytes) applies to the decompressed body too. "
                                     "Any other coding is a 415.",
                      "schema": {"type": "string", "enum": ["gzip", "x-gzip", "deflate", "identity"]}}
    slow = (f"The request did not arrive within {settings.http_read_timeout_s:g} s (head) plus its size at "
            f"{settings.http_min_upload_bytes_per_s} bytes/s (body); the connection is closed")
    action_param = {"name": "action", "in": "path", "required": True,
                    "schema": {"type": "string", "example": "JoinEvents"}}
    date = {"type": "string", "format": "date-time", "example": "2016-04-30T23:25:43.511Z"}
    prop = {"type": "array", "items": {"$ref": "#/components/schemas/ExtentionProperty"}}
    batch_schema = {"type": "array", "minItems": 1, "maxItems": settings.max_events,
                    "items": {"$ref": "#/components/schemas/Event"}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "eventpipe ingest gateway",
            "version": "3",
            "description": "HTTP ingest of v3 events and Zidium-style join records, events and components into "
                           "Kafka. A 200 (v3) or Code 10 (JoinEvents, SendEvent, components) means every accepted "
                           "record is acknowledged by Kafka (acks=all).",
        },
        "servers": [{"url": f"http://{settings.http_host}:{settings.http_port}"}],
        "paths": {
            "/v3/events": {
                "post": {
                    "operationId": "postEvents",
                    "summary": "Send a batch of v3 events (all-or-nothing)",
                    "description": "Credentials: form field `apikey`, header `X-Api-Key` or `Authorization: Bearer`. "
                                   "Events without `id` get an id derived from the account, their content and "
                                   "their occurrence among identical events of the batch, so a retry is safe; an "
                                   "event without a session also folds in the whole batch, so the same sessionless "
                                   "event from two devices stays two events. Send an `id` with sessionless events.",
                    "security": [{"apiKeyHeader": []}, {"bearer": []}, {}],
                    "parameters": [encoding_param],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": {
                                "type": "object", "required": ["data"],
                                "properties": {"data": {"type": "string",
                                                        "description": "JSON array of events (see Event)"},
                                               "apikey": {"type": "string"}}}},
                            "multipart/form-data": {"schema": {
                                "type": "object", "required": ["data"],
                                "properties": {"data": {"type": "string"}, "apikey": {"type": "string"}}}},
                            "application/json": {"schema": {"oneOf": [
                                batch_schema,
                                {"type": "object", "required": ["data"],
                                 "properties": {"data": batch_schema, "apikey": {"type": "string"}}}]}},
                        },
                    },
                    "responses": {
                        "200": {"description": "Every event acknowledged by Kafka",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V3Ok"}}}},
                        "400": _v3_error("No data, not JSON, not an array, or an empty array", 1),
                        "401": _v3_error("Missing or unknown API key", 2),
                        "408": _v3_error(slow, 1),
                        "413": _v3_error(f"Body over {settings.max_body_bytes} bytes (as sent or decompressed) or "
                                         f"batch over {settings.max_events} events; answered with Connection: "
                                         "close once the body is read (up to "
                                         f"{settings.http_discard_bytes} bytes; a larger one is cut off)", 4),
                        "415": _v3_error("Unsupported content type or Content-Encoding", 5),
                        "422": _v3_error("One or more events invalid; details lists each; nothing accepted", 3),
                        "503": {**_v3_error(f"Kafka did not acknowledge within {settings.publish_timeout_s:g} s; "
                                            "retrying the same request is safe", 7), "headers": retry_after},
                    },
                },
            },
            "/api/{action}": {
                "post": {
                    "operationId": "zidiumAction",
                    "summary": "Zidium-style API: JoinEvents, SendEvent, GetRootComponent, GetOrAddComponent, "
                               "GetComponentById, UpdateComponent, GetEcho, GetServerTime (case-insensitive)",
                    "description": "JoinEvents: invalid records are ignored (and dead-lettered with the reason) "
                                   "while the others are processed. SendEvent becomes a join record as Zidium's "
                                   "server derives it (type from TypeSystemName, JoinKey and JoinIntervalSeconds "
                                   "by Category); components get ids derived from (account, parent, system name). "
                                   "Outcomes are HTTP 200 with a Code: 10 success (Data per action), 100 unknown "
                                   "action, 101 empty or unparsable body, 1140 missing Token, SecretKey, Data or a "
                                   "required Data field (named in ErrorMessage; also a ComponentId that is not a "
                                   "GUID), 1141 an unusable field, 1100 unknown component, 1151 StartDate too far "
                                   "ahead, 1002 invalid secret key. Kafka unavailable: HTTP 503, Code 1190, "
                                   "Retry-After. Dates in answers are yyyy-MM-ddTHH:mm:ss.SSSZ (24 characters).",
                    "parameters": [action_param, encoding_param],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/JoinEventsRequest"},
                        {"$ref": "#/components/schemas/ZidiumRequest"}]}}}},
                    "responses": {
                        "200": _zidium("Code 10 success, or a request-level code (100, 101, 1002, 1100, 1140, "
                                       "1141, 1151)"),
                        "408": _zidium(f"{slow} (Code 101)"),
                        "413": _zidium(f"Body over {settings.max_body_bytes} bytes (as sent or decompressed) or "
                                       f"more than {settings.max_events} records (Code 101); Connection: close"),
                        "415": _zidium("Unsupported Content-Encoding (Code 101)"),
                        "503": {**_zidium("Kafka (or, for component look-ups, ClickHouse) unavailable (Code 1190); "
                                          "retrying is safe"), "headers": retry_after},
                    },
                },
                "get": {
                    "operationId": "zidiumServerTime",
                    "summary": "GetServerTime only (as Zidium's server answers it to GET); other actions Code 100",
                    "parameters": [action_param],
                    "responses": {"200": _zidium('{"Code":10,"Data":{"Date":"2016-04-30T23:25:43.511Z"}}')},
                },
            },
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process is alive",
                                 "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Kafka is reachable",
                                "responses": {"200": {"description": "Ready"},
                                              "503": {"description": "Kafka unreachable"}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (eventpipe_*)",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3 document"}}}},
        },
        "components": {
            "securitySchemes": {
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Event": {
                    "type": "object",
                    "required": ["action", "type", "timestamp", "entities"],
                    "properties": {
                        "action": {"type": "string", "enum": ["START", "UPDATE", "END"]},
                        "type": {"type": "string", "enum": sorted(event_types)},
                        "timestamp": {"type": "integer", "minimum": 0, "maximum": 99_999_999_999,
                                      "description": "UNIX seconds (milliseconds are rejected)"},
                        "session": {"type": "string", "minLength": SESSION_MIN, "maxLength": SESSION_MAX,
                                    "description": "Required for END"},
                        "entities": {"type": "array", "maxItems": settings.max_entities,
                                     "items": {"$ref": "#/components/schemas/Entity"}},
                        "id": {"type": "string", "minLength": 1, "maxLength": CLIENT_ID_MAX,
                               "description": "Client-chosen unique id; becomes the event_id"},
                    },
                },
                "Entity": {
                    "type": "object", "required": ["key", "value"],
                    "properties": {"key": {"type": "string", "minLength": 1},
                                   "value": {"description": "Any JSON value; binary as base64 text"}},
                },
                "V3Ok": {"type": "object", "properties": {"APIVersion": {"type": "integer", "enum": [3]},
                                                          "result": {"type": "integer", "enum": [1]}}},
                "V3Error": {
                    "type": "object",
                    "properties": {
                        "APIVersion": {"type": "integer", "enum": [3]},
                        "result": {"type": "integer", "enum": [0]},
                        "error": {"type": "object", "properties": {
                            "code": {"type": "integer", "enum": [1, 2, 3, 4, 5, 7]},
                            "message": {"type": "string"},
                            "details": {"type": "array", "items": {"type": "object", "properties": {
                                "index": {"type": "integer"}, "field": {"type": "string"},
                                "rule": {"type": "string"}, "message": {"type": "string"}}}}}},
                    },
                },
                "JoinEventsRequest": {
                    "type": "object", "required": ["Token", "Data"],
                    "properties": {
                        "Token": {"type": "object", "required": ["SecretKey"],
                                  "properties": {"SecretKey": {"type": "string"}}},
                        "Data": {"type": "array", "maxItems": settings.max_events,
                                 "items": {"$ref": "#/components/schemas/JoinRecord"}},
                    },
                },
                "JoinRecord": {
                    "type": "object", "required": ["ComponentId", "TypeId"],
                    "properties": {
                        "EventId": guid, "ComponentId": guid, "TypeId": guid,
                        "JoinKey": {"type": "integer", "format": "int64", "default": 0},
                        "StartDate": {"type": "string", "format": "date-time",
                                      "description": "Default: the time the request is received"},
                        "JoinInterval": {"type": "number", "minimum": 0, "default": 0},
                        "Importance": {"oneOf": [{"type": "string", "enum": ["Success", "Warning", "Alarm", "Unknown"]},
                                                 {"type": "integer", "enum": [50, 100, 150, 0]}],
                                       "default": "Unknown"},
                        "Count": {"type": "integer", "default": 1, "description": "Missing or < 1 means 1"},
                        "Message": {"type": "string", "maxLength": MESSAGE_MAX},
                        "Version": {"type": "string", "maxLength": VERSION_MAX},
                    },
                },
                "ZidiumRequest": {
                    "type": "object", "required": ["Token"],
                    "description": "Every action but JoinEvents: Data is the action's object (none for "
                                   "GetRootComponent and GetServerTime).",
                    "properties": {
                        "Token": {"type": "object", "required": ["SecretKey"],
                                  "properties": {"SecretKey": {"type": "string"},
                                                 "Account": {"type": "string", "description": "Ignored: the "
                                                             "account is the key's"}}},
                        "Data": {"oneOf": [{"$ref": "#/components/schemas/SendEventData"},
                                           {"$ref": "#/components/schemas/GetOrAddComponentData"},
                                           {"$ref": "#/components/schemas/UpdateComponentData"},
                                           {"type": "object", "title": "GetComponentById",
                                            "required": ["ComponentId"], "properties": {"ComponentId": guid}},
                                           {"type": "object", "title": "GetEcho",
                                            "properties": {"Message": {"type": "string"}}}]},
                    },
                },
                "SendEventData": {
                    "type": "object", "required": ["ComponentId", "TypeSystemName"],
                    "properties": {
                        "ComponentId": guid,
                        "TypeSystemName": {"type": "string", "maxLength": 255,
                                           "description": "Default: TypeDisplayName; one of the two is required"},
                        "TypeDisplayName": {"type": "string", "maxLength": 255},
                        "TypeCode": {"type": "string", "maxLength": 20},
                        "Category": {"type": "string", "enum": ["ComponentEvent", "ApplicationError"],
                                     "default": "ComponentEvent"},
                        "Message": {"type": "string", "maxLength": MESSAGE_MAX}, "StartDate": date,
                        "Count": {"type": "integer", "default": 1},
                        "Importance": {"type": "string", "enum": ["Success", "Warning", "Alarm", "Unknown"],
                                       "description": "Default: Alarm for ApplicationError, else Unknown"},
                        "JoinKey": {"type": "integer", "format": "int64",
                                    "description": "Default: ApplicationError: Zidium's hash of TypeSystemName and "
                                                   "the Stack property; else 0"},
                        "JoinIntervalSeconds": {"type": "number", "minimum": 0,
                                                "description": "Default: ApplicationError 86400, else 0"},
                        "Version": {"type": "string", "maxLength": VERSION_MAX}, "Properties": prop,
                    },
                },
                "GetOrAddComponentData": {
                    "type": "object", "required": ["SystemName", "TypeId"],
                    "properties": {"ParentComponentId": {**guid, "description": "Default: the root component"},
                                   "SystemName": {"type": "string", "maxLength": 255},
                                   "DisplayName": {"type": "string", "maxLength": 255}, "TypeId": guid,
                                   "Version": {"type": "string"}, "Properties": prop},
                },
                "UpdateComponentData": {
                    "type": "object", "required": ["Id"],
                    "properties": {"Id": guid, "ParentId": guid, "SystemName": {"type": "string"},
                                   "DisplayName": {"type": "string"}, "TypeId": guid, "Version": {"type": "string"},
                                   "Properties": prop},
                },
                "ExtentionProperty": {"type": "object", "required": ["Name"],
                                      "properties": {"Name": {"type": "string"}, "Value": {"type": "string"},
                                                     "Type": {"type": "string", "example": "String"}}},
                "Component": {
                    "type": "object",
                    "properties": {"Id": guid, "ParentId": {**guid, "nullable": True},
                                   "Type": {"type": "object", "properties": {
                                       "Id": guid, "SystemName": {"type": "string"},
                                       "DisplayName": {"type": "string"}, "IsSystem": {"type": "boolean"}}},
                                   "SystemName": {"type": "string"}, "DisplayName": {"type": "string"},
                                   "CreatedDate": date, "Version": {"type": "string", "nullable": True},
                                   "Properties": prop},
                },
                "ZidiumResponse": {
                    "type": "object", "required": ["Code"],
                    "properties": {
                        "Code": {"type": "integer", "enum": [10, 100, 101, 1002, 1100, 1140, 1141, 1151, 1190]},
                        "ErrorMessage": {"type": "string"},
                        "Data": {"description": "JoinEvents: \"\"; components: a Component; SendEvent: "
                                                "{EventId, EventTypeId}; GetEcho: the Message; GetServerTime: "
                                                "{Date}",
                                 "oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/Component"},
                                           {"type": "object", "properties": {"EventId": guid, "EventTypeId": guid}},
                                           {"type": "object", "properties": {"Date": date}}]},
                    },
                },
            },
        },
    }
