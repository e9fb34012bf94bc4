"""Upstream health checks (APISIX ``schema_def.health_checker``, lua-resty-healthcheck's
defaults).

    checks
     ├── active    probes every node on a timer: http, https or tcp
     │    ├── healthy     interval, http_statuses, successes
     │    └── unhealthy   interval, http_statuses, http_failures, tcp_failures, timeouts
     └── passive   counts what real traffic meets (needs ``active``, as in APISIX)
          ├── healthy     http_statuses, successes (0: traffic never brings a node back)
          └── unhealthy   http_statuses, http_failures, tcp_failures, timeouts (0: not counted)

Unlike APISIX, unknown fields are refused (every accepted field has an effect), and so is
anything that could not be sent as written (a path or header with control characters).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from llmgate.schemas.common import Host

Status = Annotated[int, Field(ge=200, le=599)]
Threshold = Annotated[int, Field(ge=1, le=254)]
PassiveThreshold = Annotated[int, Field(ge=0, le=254)]
Method = Literal[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"
]


def _unique(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError("expected unique items")
    return values


def _printable(value: str, what: str, space: bool) -> str:
    for char in value:
        if ord(char) < 0x20 or ord(char) == 0x7F or (char == " " and not space):
            raise ValueError(f"{what} must not contain control characters or spaces")
    return value


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("http_path must start with /")
    return _printable(value, "http_path", space=False)


def _header(value: str) -> str:
    name, sep, _ = value.partition(":")
    if not sep or not name.strip() or " " in name.strip():
        raise ValueError("each req_headers item must read 'Name: value'")
    return _printable(value, "req_headers", space=True)


Statuses = Annotated[list[Status], Field(min_length=1), AfterValidator(_unique)]
HeaderLine = Annotated[str, AfterValidator(_header)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ActiveHealthy(_Section):
    interval: Annotated[int, Field(ge=1)] = 1
    http_statuses: Statuses = [200, 302]
    successes: Threshold = 2


class ActiveUnhealthy(_Section):
    interval: Annotated[int, Field(ge=1)] = 1
    http_statuses: Statuses = [429, 404, 500, 501, 502, 503, 504, 505]
    http_failures: Threshold = 5
    tcp_failures: Threshold = 2
    timeouts: Threshold = 3


class ActiveCheck(_Section):
    type: Literal["http", "https", "tcp"] = "http"
    timeout: Annotated[float, Field(gt=0, le=300)] = 1
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 10
    host: Host | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    http_method: Method = "GET"
    http_path: Annotated[str, Field(max_length=4096), AfterValidator(_path)] = "/"
    http_req_body: Annotated[str, Field(max_length=65536)] = ""
    https_verify_certificate: bool = True
    healthy: ActiveHealthy = ActiveHealthy()
    unhealthy: ActiveUnhealthy = ActiveUnhealthy()
    req_headers: Annotated[list[HeaderLine], Field(min_length=1, max_length=64)] | None = None


class PassiveHealthy(_Section):
    http_statuses: Statuses = [
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
        300, 301, 302, 303, 304, 305, 306, 307, 308,
    ]  # fmt: skip
    successes: PassiveThreshold = 5


class PassiveUnhealthy(_Section):
    http_statuses: Statuses = [429, 500, 503]
    tcp_failures: PassiveThreshold = 2
    timeouts: PassiveThreshold = 7
    http_failures: PassiveThreshold = 5


class PassiveCheck(_Section):
    # "tcp" applies to stream routes, which llmgate has not: refused rather than ignored.
    type: Literal["http", "https"] = "http"
    healthy: PassiveHealthy = PassiveHealthy()
    unhealthy: PassiveUnhealthy = PassiveUnhealthy()


class Checks(_Section):
    """An upstream's ``checks``: ``active`` is required (APISIX: anyOf active / active+passive)."""

    active: ActiveCheck
    passive: PassiveCheck | None = None
