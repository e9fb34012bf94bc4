"""The gateway's own errors in OpenAI's shape, for routes whose clients are OpenAI SDKs.

APISIX answers ``{"error_msg": ...}`` (limits, 404, 502...) or ``{"message": ...}`` (auth,
consumer-restriction, prompt plugins).  An OpenAI client expects

    {"error": {"message": ..., "type": ..., "param": null, "code": ...}}

and raises ``AuthenticationError``, ``RateLimitError``... with ``.message``, ``.type`` and
``.code`` read from it.  ``openai_error`` turns one into the other, keeping APISIX's message:

    status          type                    code
    400 413 422     invalid_request_error   invalid_request / request_too_large / ...
    401             authentication_error    invalid_api_key
    403             permission_error        permission_denied
    404             invalid_request_error   not_found
    429             rate_limit_error        rate_limit_exceeded
    5xx             api_error               bad_gateway / service_unavailable / gateway_timeout

A limiter's rejection (any status: limit-count's default is 503, the seed blog's 403) carries
``Retry-After``; it is a ``rate_limit_error`` / ``rate_limit_exceeded`` whatever its status.
Every 429 of an LLM route carries ``Retry-After``, a provider's too (``retry_after_for``).

Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

# The keys of the bodies APISIX's error replies have; a body with any other key (an upstream's
# answer, a cached one, an operator's ``error_response``) is not the gateway's and is kept.
APISIX_KEYS = frozenset({"error_msg", "message", "description"})

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_type(status: int, limited: bool = False) -> str:
    """OpenAI's ``type`` for a gateway error with ``status`` (``limited``: a limiter's)."""
    if limited:
        return "rate_limit_error"
    if status >= 500:
        return "api_error"
    return _TYPES.get(status, "invalid_request_error")


def error_code(status: int, limited: bool = False) -> str:
    if limited:
        return "rate_limit_exceeded"
    return _CODES.get(status, "api_error" if status >= 500 else "invalid_request")


def error_body(
    status: int,
    message: str,
    *,
    limited: bool = False,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": error_type(status, limited),
            "param": param,
            "code": code or error_code(status, limited),
        }
    }


def invalid_method(method: str, path: str) -> dict[str, Any]:
    """OpenAI's 405 body for a method an endpoint does not take (``GET /v1/chat/completions``):
    ``code`` is null there, as OpenAI sends it."""
    return {
        "error": {
            "message": f"Invalid method for URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def apisix_message(body: bytes) -> str | None:
    """The message of an APISIX-shaped error body; None when the body is not one."""
    if not body.startswith(b"{"):
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not payload or not set(payload) <= APISIX_KEYS:
        return None
    message = payload.get("error_msg", payload.get("message"))
    if not isinstance(message, str):
        return None
    description = payload.get("description")
    if isinstance(description, str) and description:
        message = f"{message}: {description}"
    return message


def openai_error(status: int, body: bytes, limited: bool = False) -> bytes | None:
    """``body`` (an APISIX error) in OpenAI's shape; None when it is not an APISIX error."""
    message = apisix_message(body)
    if message is None:
        return None
    return orjson.dumps(error_body(status, message, limited=limited))


def retry_after_for(status: int, headers: Mapping[str, str]) -> str | None:
    """The ``Retry-After`` an LLM route's response needs, None when it needs none: a 429
    without one (a provider's: OpenAI sends it only at times) waits the provider's
    ``retry-after-ms`` in whole seconds, rounded up, else 1 s, so that clients' retries wait
    what the gateway says instead of backing off blindly."""
    if status != 429 or "Retry-After" in headers:
        return None
    try:
        millis = float(headers.get("retry-after-ms", ""))
    except ValueError:
        return "1"
    return str(max(math.ceil(millis / 1000), 1)) if math.isfinite(millis) else "1"
