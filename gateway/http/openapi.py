"""The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json.

Written by hand from the contract; tests/test_openapi.py runs schemathesis against the live app
so the description and the behaviour cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import ERROR_CODES
from gateway.tokens.request import ID_RULE

ID_PATTERN = ID_RULE.pattern
_ID = {"type": "string", "pattern": ID_PATTERN, "minLength": 1, "maxLength": 128}
_REQUEST_ID = {
    "description": "The caller's X-Request-ID when it sent a sane one, else a new one",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}


def _error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": _REQUEST_ID, **headers},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": _REQUEST_ID, **headers},
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_INTERNAL = _error("Anything else; never a stack trace")

_TOKEN_OPERATION: dict[str, Any] = {
    "summary": "Get a signed embed token for one tenant's dashboard",
    "description": (
        "Reuses the cached token while it has more than the refresh buffer left, else mints one."
        " Body at most 16 KiB. snake_case and camelCase field names are both accepted;"
        " unknown fields are ignored."
    ),
    "security": [{"callerJwt": []}],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}},
    },
    "responses": {
        "200": _json(
            "The token", "TokenResponse", **{"Cache-Control": {"schema": {"const": "no-store"}}}
        ),
        "400": _error("Body not JSON, not an object, or a field missing, wrong or invalid"),
        "401": _error(
            "No bearer token, or it failed verification",
            **{"WWW-Authenticate": {"schema": {"type": "string"}}},
        ),
        "403": _error("The caller's tenant claim does not name the requested tenant"),
        "404": _error("No dashboard for that tenant and workspace, or the named one is not theirs"),
        "413": _error("Body over 16 KiB"),
        "415": _error("Not application/json"),
        "429": _error("Over a rate limit", **{"Retry-After": _RETRY_AFTER}),
        "500": _INTERNAL,
        "503": _error("A dependency this request needs is down", **{"Retry-After": _RETRY_AFTER}),
    },
}


def _token_operation(operation_id: str) -> dict[str, Any]:
    return {**_TOKEN_OPERATION, "operationId": operation_id}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Embed-token gateway",
        "version": "1",
        "description": "Short-lived signed tokens for embedding dashboards, one tenant at a time.",
    },
    "paths": {
        "/api/v1/dashboards/iframe-token": {"post": _token_operation("issueToken")},
        "/api/dashboards/iframe-token": {"post": _token_operation("issueTokenVendorPath")},
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive",
                "responses": {"200": _json("Alive", "Health"), "500": _INTERNAL},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "PostgreSQL and Redis both answer",
                "responses": {
                    "200": _json("Ready", "Readiness"),
                    "500": _INTERNAL,
                    "503": _json("A dependency is unreachable; `failing` names it", "Readiness"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition (every worker's, with several)",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "500": _INTERNAL,
                },
            }
        },
        "/static/embed-client.js": {
            "get": {
                "operationId": "embedClient",
                "summary": "The browser embed client (ES module), cacheable for a year",
                "responses": {
                    "200": {
                        "description": "The module; pin it with the README's SRI hash",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                    "500": _INTERNAL,
                },
            }
        },
        "/static/embed-react.js": {
            "get": {
                "operationId": "embedReact",
                "summary": "The React binding of the embed client (ES module importing react)",
                "responses": {
                    "200": {
                        "description": "The module; it imports ./embed-client.js beside it",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                    "500": _INTERNAL,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "500": _INTERNAL,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "callerJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        },
        "schemas": {
            "TokenRequest": {
                "type": "object",
                "properties": {
                    "tenant_id": _ID,
                    "tenantId": _ID,
                    "workspace_id": _ID,
                    "workspaceId": _ID,
                    "dashboard_id": _ID,
                    "dashboardId": _ID,
                },
                "allOf": [
                    {"anyOf": [{"required": ["tenant_id"]}, {"required": ["tenantId"]}]},
                    {"anyOf": [{"required": ["workspace_id"]}, {"required": ["workspaceId"]}]},
                ],
                "additionalProperties": True,
                "examples": [
                    {
                        "tenant_id": "org-123",
                        "workspace_id": "workspace-456",
                        "dashboard_id": "dashboard-789",
                    }
                ],
            },
            "TokenResponse": {
                "type": "object",
                "required": ["token", "dashboard_id", "expires_at"],
                "properties": {
                    "token": {"type": "string", "minLength": 1},
                    "dashboard_id": _ID,
                    "expires_at": {
                        "type": "integer",
                        "description": "Unix time in seconds; equals the token's valid_until",
                    },
                },
                "additionalProperties": False,
            },
            "Error": {
                "type": "object",
                "required": ["error", "request_id"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {
                                "type": "string",
                                "enum": list(ERROR_CODES),
                            },
                            "message": {"type": "string"},
                        },
                    },
                    "request_id": {"type": "string"},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"const": "ok"}},
            },
            "Readiness": {
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                    "status": {"enum": ["ready", "unavailable"]},
                    "checks": {
                        "type": "object",
                        "properties": {
                            "postgresql": {"type": "string"},
                            "redis": {"type": "string"},
                        },
                    },
                    "failing": {
                        "type": "array",
                        "items": {"enum": ["postgresql", "redis"]},
                    },
                },
            },
        },
    },
}

_BODY = orjson.dumps(SPEC)


async def openapi_json(_request: web.Request) -> web.Response:
    """GET /openapi.json: the API description."""
    return web.Response(body=_BODY, content_type="application/json")
