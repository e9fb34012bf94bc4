"""An upstream's client certificate (mutual TLS), as APISIX's upstream ``tls``.

The certificate is inline (``tls.client_cert`` with ``tls.client_key``) or the ssl of
``type: client`` that ``tls.client_cert_id`` names.  Either key is stored sealed
(``credentials.seal``); it is unsealed in memory only, when the upstream's pool builds its one
client context (``PoolRegistry.get``): a pool kept across snapshots keeps its context, so
nothing is built per request.  An ``http`` upstream presents no certificate (as APISIX: only
``https``/``grpcs`` do), but what it names is checked all the same.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmgate import credentials
from llmgate.http.tls import CertificateError, upstream_context
from llmgate.runtime.instances import CompileError
from llmgate.schemas.upstream import Tls

__all__ = ["ClientCertificate", "client_certificate", "ssl_id_refused"]


def ssl_id_refused(id: object, value: Mapping[str, Any] | None) -> str | None:
    """APISIX's message when ``client_cert_id`` ``id`` names no ssl (``value`` None) or one
    that is not a client certificate; None when it names a client ssl."""
    if value is None:
        return f"failed to fetch ssl info by ssl id [{id}], response code: 404"
    if value.get("type") != "client":
        return f"failed to fetch ssl info by ssl id [{id}], wrong ssl type"
    return None


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A certificate (PEM) and its key as stored (sealed, or plain from a file applied)."""

    cert: str
    key: str

    def identity(self) -> list[str]:
        """What a pool's key holds of it: a new certificate or key makes a new pool."""
        return [self.cert, self.key]

    def context_maker(self, verify: bool) -> Callable[[], ssl.SSLContext]:
        """Builds the upstream's client context presenting this certificate; ``CompileError``
        when the key cannot be unsealed here or does not go with the certificate."""

        def make() -> ssl.SSLContext:
            try:
                return upstream_context(verify, self.cert, credentials.unseal(self.key))
            except (CertificateError, credentials.SealError) as exc:
                raise CompileError(f"upstream tls: {exc}") from None

        return make


def client_certificate(
    tls: Tls | None, ssls: Mapping[str, Mapping[str, Any]]
) -> ClientCertificate | None:
    """The certificate an upstream with ``tls`` presents (``ssls``: stored ssls by id), None
    when it presents none; ``CompileError`` when ``client_cert_id`` names no client ssl."""
    if tls is None:
        return None
    if tls.client_cert_id is not None:
        value = ssls.get(str(tls.client_cert_id))
        refused = ssl_id_refused(tls.client_cert_id, value)
        if refused is not None or value is None:
            raise CompileError(refused or "")
        cert, key = value.get("cert"), value.get("key")
        if not isinstance(cert, str) or not isinstance(key, str):
            raise CompileError(f"ssl [{tls.client_cert_id}] has no cert and key")
        return ClientCertificate(cert, key)
    if tls.client_cert is not None and tls.client_key is not None:
        return ClientCertificate(tls.client_cert, tls.client_key)
    return None
