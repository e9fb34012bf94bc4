"""llmgate's errors, and the one place that turns them into JSON responses.

    LlmgateError
     ├── SettingsError          invalid settings: start-up stops with one line
     └── HttpError              an answer other than success, with its status and JSON body
          ├── BadRequest        400 {"error_msg": …}           (admin validation, bad input)
          ├── Unauthorized      401 {"error_msg": "failed to check token", "description": …}
          ├── NotFound          404 {"message": "Key not found"} or {"error_msg": …}
          └── MethodNotAllowed  405 {"error_msg": "not supported `POST` method for consumer"}

The data plane adds its own ``HttpError`` subclasses for 401/403/429/502/503/504.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from aiohttp import web

# The headers of an answer after which the connection ends, as nginx's 413 for a body over
# its limit: what is left of the body is not read (``http/protocol.py``'s lingering close).
CLOSES_CONNECTION = {"Connection": "close"}


class LlmgateError(Exception):
    """Base of every error llmgate raises on purpose."""


class SettingsError(LlmgateError):
    """A setting is invalid; the message is the one line shown to the operator."""


class HttpError(LlmgateError):
    """An error answered to an HTTP client as ``status`` with the JSON ``body``."""

    status: int = 500
    headers: ClassVar[dict[str, str]] = {}  # sent with the answer (Retry-After...)

    def __init__(self, body: dict[str, Any], status: int | None = None) -> None:
        super().__init__(body)
        self.body = body
        if status is not None:
            self.status = status


class BadRequest(HttpError):
    status = 400

    def __init__(self, error_msg: str) -> None:
        super().__init__({"error_msg": error_msg})


class Unauthorized(HttpError):
    status = 401

    def __init__(self, description: str) -> None:
        super().__init__({"error_msg": "failed to check token", "description": description})


class NotFound(HttpError):
    status = 404

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        super().__init__(body or {"message": "Key not found"})


class MethodNotAllowed(HttpError):
    status = 405

    def __init__(self, error_msg: str) -> None:
        super().__init__({"error_msg": error_msg})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response, serialised with orjson."""
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def error_response(error: HttpError) -> web.Response:
    return json_response(error.status, error.body, error.headers or None)
