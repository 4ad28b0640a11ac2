"""Domain errors: each carries the contract's status, error code and audit event.

Nothing here knows about HTTP frameworks; one middleware maps these to responses.
"""

from __future__ import annotations

from typing import Any, ClassVar

# The one list of the contract's error codes (the OpenAPI enum and the HTTP layer import it):
# the domain errors' codes below, then the two the router itself answers.
ERROR_CODES = (
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "dashboard_not_found",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "unavailable",
    "internal_error",
    "not_found",
    "method_not_allowed",
)
# Audit events of requests to the token endpoint, then operators' events (not requests).
TOKEN_EVENTS = (
    "token_issued",
    "token_reused",
    "auth_failed",
    "access_denied",
    "dashboard_not_found",
    "invalid_request",
    "rate_limited",
    "unavailable",
    "internal_error",
)
OPERATOR_EVENTS = ("tokens_revoked", "mapping_changed")
AUDIT_EVENTS = TOKEN_EVENTS + OPERATOR_EVENTS


class GatewayError(Exception):
    """Base of every error a caller may see; `message` is safe to show them."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    event: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, reason: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        # `reason` is a short machine-readable cause for the audit row and metrics.
        self.reason = reason or self.code
        self.detail = detail

    def headers(self) -> dict[str, str]:
        """Extra response headers this error requires."""
        return {}


class InvalidRequest(GatewayError):
    """The body is not the JSON object the contract describes."""

    status = 400
    code = "invalid_request"
    event = "invalid_request"


class Unauthenticated(GatewayError):
    """No bearer token, or it failed verification."""

    status = 401
    code = "unauthenticated"
    event = "auth_failed"

    def headers(self) -> dict[str, str]:
        """RFC 6750 section 3 challenge."""
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(GatewayError):
    """The caller may not act for the requested tenant."""

    status = 403
    code = "forbidden"
    event = "access_denied"


class DashboardNotFound(GatewayError):
    """No dashboard for that tenant and workspace, or the named one is not theirs."""

    status = 404
    code = "dashboard_not_found"
    event = "dashboard_not_found"


class PayloadTooLarge(GatewayError):
    """The body is over the limit."""

    status = 413
    code = "payload_too_large"
    event = "invalid_request"


class UnsupportedMediaType(GatewayError):
    """The body is not declared as application/json."""

    status = 415
    code = "unsupported_media_type"
    event = "invalid_request"


class _RetryLater(GatewayError):
    """An error the caller may retry after `retry_after` whole seconds."""

    def __init__(self, message: str, *, retry_after: int = 1, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        """Tell the caller when to come back."""
        return {"Retry-After": str(self.retry_after)}


class RateLimited(_RetryLater):
    """Over a rate limit."""

    status = 429
    code = "rate_limited"
    event = "rate_limited"


class Unavailable(_RetryLater):
    """A dependency this request needs is down."""

    status = 503
    code = "unavailable"
    event = "unavailable"
