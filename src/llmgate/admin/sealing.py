"""Private keys sealed at rest (``credentials.seal``, ``LLMGATE_SSL_KEY``): an ssl's ``key`` and
an upstream's ``tls.client_key`` (also inline in a route or service), as APISIX encrypts them.
The store and a write's answer hold only the sealed form.  A certificate that holds a private
key too is refused: the certificate is stored and returned as sent."""

from __future__ import annotations

from typing import Any

from llmgate import credentials
from llmgate.errors import BadRequest

__all__ = ["seal_client_key", "seal_inline_client_key", "seal_key"]


def _sealed(pem: str, where: str | None) -> str:
    """A private key's sealed form, or a 400 (naming the field ``where`` when given)."""
    try:
        return credentials.seal(pem)
    except credentials.SealError as exc:
        raise BadRequest(f"{where}: {exc}" if where else str(exc)) from None


def _refuse_key_in_cert(cert: Any, field: str) -> None:
    """A cert holding a private key too would be stored, returned and dumped in plaintext."""
    if isinstance(cert, str) and "PRIVATE KEY-----" in cert:
        raise BadRequest(
            f"invalid configuration: {field} holds a private key: send it in the key only"
        )


def seal_key(conf: dict[str, Any]) -> dict[str, Any]:
    """An ssl with its private key sealed (a GET leaves the key out)."""
    _refuse_key_in_cert(conf.get("cert"), "cert")
    key = conf.get("key")
    if not isinstance(key, str):
        return conf
    return {**conf, "key": _sealed(key, None)}


def seal_client_key(upstream: dict[str, Any]) -> dict[str, Any]:
    """An upstream (a resource's value or inline) with its ``tls.client_key`` sealed: a GET
    shows only the sealed form, the viewer not even that."""
    tls = upstream.get("tls")
    if not isinstance(tls, dict):
        return upstream
    _refuse_key_in_cert(tls.get("client_cert"), "tls.client_cert")
    key = tls.get("client_key")
    if not isinstance(key, str):
        return upstream
    return {**upstream, "tls": {**tls, "client_key": _sealed(key, "tls.client_key")}}


def seal_inline_client_key(conf: dict[str, Any]) -> dict[str, Any]:
    """A route or service with the ``tls.client_key`` of its inline ``upstream`` sealed."""
    upstream = conf.get("upstream")
    if not isinstance(upstream, dict):
        return conf
    return {**conf, "upstream": seal_client_key(upstream)}
