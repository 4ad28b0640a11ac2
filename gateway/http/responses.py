"""The contract's error answers: one function turns any exception into the JSON error."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import GatewayError, PayloadTooLarge

log = logging.getLogger("gateway.http.middleware")

NO_STORE = {"Cache-Control": "no-store"}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_body(code: str, message: str, request_id: str) -> bytes:
    """The contract's error JSON."""
    return orjson.dumps({"error": {"code": code, "message": message}, "request_id": request_id})


def error_response(exc: GatewayError, request_id: str) -> web.Response:
    """The contract's error response for a domain error (never cached: it is about one request)."""
    return web.Response(
        status=exc.status,
        body=error_body(exc.code, exc.message, request_id),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **exc.headers()},
    )


def json_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    """A contract error response that no domain error describes (router and parser answers)."""
    return web.Response(
        status=status,
        body=error_body(code, message, request_id),
        content_type="application/json",
        headers=NO_STORE,
    )


def _from_http_exception(exc: web.HTTPException, request_id: str) -> tuple[web.Response, str]:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        err = PayloadTooLarge("request body is over the 16 KiB limit")
        return error_response(err, request_id), err.code
    code = _HTTP_CODES.get(exc.status, "invalid_request" if exc.status < 500 else "internal_error")
    message = exc.reason.lower() if exc.status < 500 else "internal error"
    response = json_error(exc.status, code, message, request_id)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response, code


def contract_error(exc: Exception, request_id: str) -> tuple[web.Response, str, str, str]:
    """The answer to `exc`, with the audit event, reason and error code it stands for."""
    if isinstance(exc, GatewayError):
        return error_response(exc, request_id), exc.event, exc.reason, exc.code
    if isinstance(exc, web.HTTPException):
        response, code = _from_http_exception(exc, request_id)
        # Protocol-level refusals: a wrong method, 413, a bad body encoding.
        event = "invalid_request" if response.status < 500 else "internal_error"
        return response, event, code, code
    if isinstance(exc, RequestPayloadError):
        # The body broke after its headers were accepted (bad chunking, an undecodable
        # Content-Encoding): the caller's fault, and its text may quote the body, so not logged.
        response = json_error(
            400, "invalid_request", "the request body could not be read", request_id
        )
        return response, "invalid_request", "bad_body", "invalid_request"
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
    response = json_error(500, "internal_error", "internal error", request_id)
    return response, "internal_error", "internal_error", "internal_error"
