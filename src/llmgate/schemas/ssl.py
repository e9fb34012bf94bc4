"""The ssl resource (APISIX ``schema_def.ssl``): a server certificate and key for the data
plane's TLS listener, chosen by SNI (``type: server``, the default), or a client certificate
an upstream presents for mutual TLS (``type: client``, named by ``tls.client_cert_id``; no
SNI, never served by the listener).  ``certs``/``keys`` (extra certificates), ``client``
(mTLS on the listener) and ``ssl_protocols`` are not accepted: llmgate could not honour them
yet."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from llmgate.schemas.common import Resource, Status

SNI_PATTERN = r"^\*?[0-9a-zA-Z\-._\[\]:]+$"
Sni = Annotated[str, StringConstraints(pattern=SNI_PATTERN)]
Certificate = Annotated[str, StringConstraints(min_length=128, max_length=64 * 1024)]
PrivateKey = Annotated[str, StringConstraints(min_length=64, max_length=64 * 1024)]


class Ssl(Resource):
    """A certificate stored under ``/apisix/ssls/{id}`` (its key sealed, see credentials)."""

    # ``_one_sni_field`` in the schema too, as APISIX's ssl schema states it.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "if": {"properties": {"type": {"enum": ["server"]}}},
            "then": {"oneOf": [{"required": ["sni"]}, {"required": ["snis"]}]},
        },
    )

    name: None = None  # APISIX's ssl has no name
    type: Literal["server", "client"] = "server"
    cert: Certificate
    key: PrivateKey
    sni: Sni | None = None
    snis: Annotated[list[Sni], Field(min_length=1)] | None = None
    status: Status = 1

    @model_validator(mode="after")
    def _one_sni_field(self) -> Ssl:
        if self.type == "server" and (self.sni is None) == (self.snis is None):
            raise ValueError('exactly one of "sni" or "snis" is required')
        return self

    def server_names(self) -> list[str]:
        """The names the listener serves it for: none for a client certificate."""
        if self.type == "client":
            return []
        return [self.sni] if self.sni is not None else list(self.snis or [])
