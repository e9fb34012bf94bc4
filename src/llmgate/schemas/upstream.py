"""The upstream resource (APISIX ``schema_def.upstream``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmgate.schemas.checks import Checks
from llmgate.schemas.common import Desc, Host, Id, LabelValue, Name, Resource, Timeout
from llmgate.schemas.ssl import Certificate, PrivateKey


class Node(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    weight: Annotated[int, Field(ge=0)]
    priority: int = 0
    metadata: dict[str, Any] | None = None


class KeepalivePool(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    size: Annotated[int, Field(ge=1)] = 320
    idle_timeout: Annotated[float, Field(ge=0)] = 60
    requests: Annotated[int, Field(ge=1)] = 1000


class Tls(BaseModel):
    """Upstream TLS: a client certificate for mutual TLS, inline (``client_cert`` with
    ``client_key``, the key sealed at rest) or an ssl of ``type: client`` (``client_cert_id``),
    and whether to verify the upstream's certificate."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    client_cert_id: Id | None = None
    client_cert: Certificate | None = None
    client_key: PrivateKey | None = None
    verify: bool = False

    @model_validator(mode="after")
    def _one_certificate(self) -> Tls:
        # APISIX's schema ``dependencies``: cert and key together, or an ssl's id, not both.
        if self.client_cert is not None and self.client_key is None:
            raise ValueError('"client_key" is required when "client_cert" is set')
        if self.client_key is not None and self.client_cert is None:
            raise ValueError('"client_cert" is required when "client_key" is set')
        if self.client_cert_id is not None and self.client_cert is not None:
            raise ValueError('"client_cert_id" can not be set with "client_cert" and "client_key"')
        return self


_NODE_HOST = re.compile(r"[0-9a-zA-Z\-._\[\]:]+")  # a list node's ``host``, less the wildcard


def parse_port(text: str) -> int:
    """A port as written after a colon: 1 to 5 ASCII digits naming 1..65535.  ``int()`` alone
    would also read ``"٣"`` (Arabic-Indic three) as 3, and ``" 1"`` or ``"+1"`` as 1."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise ValueError(f"invalid port {text!r}: expected 1 to 65535 in ASCII digits")
    return int(text)


def split_host_port(address: str) -> tuple[str, int | None]:
    """``"api.openai.com:443"`` -> ``("api.openai.com", 443)``; IPv6 in brackets kept whole; a
    bare IPv6 address (two colons or more) is all host, as in APISIX's ``parse_addr``.
    ``ValueError`` when what follows the last colon is not a port: never read as part of a host."""
    if address.startswith("["):
        end = address.find("]")
        host, rest = address[: end + 1], address[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"invalid port {rest!r}: expected ':' after ']'")
        return host, parse_port(rest[1:])
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:
        return address, None
    return host, parse_port(port)


# What an upstream's chash may hash on (APISIX's ``upstream_hash_vars_schema``), plus what
# llmgate also reads: ``$http_<name>``, ``$cookie_<name>`` and a leading ``$``.
_HASH_VARS = re.compile(
    r"(uri|server_addr|request_uri|remote_port|remote_addr|query_string|host"
    r"|(arg|http|cookie)_[0-9a-zA-Z_-]+)"
)
# In APISIX's list but constant (or for stream routes): every request would hash to one node.
_UNHASHABLE_VARS = ("server_name", "hostname", "mqtt_client_id")
_HASH_NAME = re.compile(r"[a-zA-Z0-9_-]+")  # APISIX's ``upstream_hash_header_schema``


def check_chash_key(hash_on: str, key: str | None) -> None:
    """``ValueError`` when chash could hash nothing on ``key``: a variable llmgate does not
    read, a header or cookie name no request can carry (APISIX refuses them too, with its
    schemas' patterns).  Every request would go to one node."""
    if hash_on == "vars":
        name = (key or "").removeprefix("$")
        if name in _UNHASHABLE_VARS:
            raise ValueError(
                f'key "{key}" is not supported: a constant, every request would go to one node'
            )
        if not _HASH_VARS.fullmatch(name):
            raise ValueError(
                f'key "{key}" is no variable chash can hash on (expected uri, request_uri, '
                "host, query_string, remote_addr, remote_port, server_addr, arg_<name>, "
                "http_<name> or cookie_<name>)"
            )
    elif hash_on in ("header", "cookie") and not _HASH_NAME.fullmatch(key or ""):
        raise ValueError(f'key "{key}" is no {hash_on} name (letters, digits, "_" and "-")')


class DiscoveryArgs(BaseModel):
    """APISIX's ``discovery_args``: read only with a ``discovery_type``, which llmgate refuses
    (it has no service discovery).  Only the empty object is accepted: the APISIX Dashboard's
    upstream form sends ``"discovery_args": {}`` with every upstream."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class UpstreamSpec(BaseModel):
    """The fields an upstream has, inline in a route or as a resource of its own."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    nodes: dict[str, Annotated[int, Field(ge=0)]] | list[Node]
    type: Literal["roundrobin", "chash", "least_conn", "ewma"] = "roundrobin"
    hash_on: Literal["vars", "header", "cookie", "consumer", "vars_combinations"] = "vars"
    key: str | None = None
    scheme: Literal["http", "https", "grpc", "grpcs"] = "http"
    retries: Annotated[int, Field(ge=0)] | None = None
    retry_timeout: Annotated[float, Field(ge=0)] | None = None
    timeout: Timeout | None = None
    keepalive_pool: KeepalivePool | None = None
    pass_host: Literal["pass", "node", "rewrite"] = "pass"
    upstream_host: Host | None = None
    tls: Tls | None = None
    checks: Checks | None = None
    discovery_args: DiscoveryArgs | None = None
    # For people, as on an upstream resource: APISIX accepts them inline too (the Dashboard's
    # route form has fields for them).
    name: Name | None = None
    desc: Desc | None = None
    labels: dict[str, LabelValue] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_discovery(cls, data: Any) -> Any:
        """APISIX's ``discovery_type`` + ``service_name`` (nodes from a registry): said by name
        rather than as an unknown field or missing ``nodes``."""
        if isinstance(data, dict):
            for name in ("discovery_type", "service_name"):
                if name in data:
                    raise ValueError(
                        f"{name} is not supported: llmgate has no service discovery (list "
                        "the upstream's nodes)"
                    )
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> UpstreamSpec:
        if isinstance(self.nodes, dict):
            for address in self.nodes:
                host, _ = split_host_port(address)
                if not _NODE_HOST.fullmatch(host):
                    raise ValueError(f"invalid node address {address}")
        if self.pass_host == "rewrite" and not self.upstream_host:
            raise ValueError("`upstream_host` can't be empty when `pass_host` is `rewrite`")
        if self.type == "chash" and self.hash_on != "consumer" and not self.key:
            raise ValueError("missing key")
        if self.type == "chash":
            check_chash_key(self.hash_on, self.key)
        return self


class Upstream(Resource, UpstreamSpec):
    """An upstream stored under ``/apisix/upstreams/{id}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
