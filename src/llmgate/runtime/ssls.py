"""Stored ssls -> the SNI index of the data plane's TLS listener.

A certificate's key is unsealed (``credentials.unseal``, LLMGATE_SSL_KEY) and loaded into its
own ``SSLContext``.  Contexts are kept across snapshots while the certificate, key and names
are unchanged (``ContextCache``), so a reload of anything else does not rebuild them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from llmgate import credentials
from llmgate.http.tls import CertificateError, server_context
from llmgate.runtime.instances import CompileError, fingerprint
from llmgate.schemas.messages import describe
from llmgate.schemas.ssl import Ssl

_STAMPS = ("create_time", "update_time", "desc", "labels")


class ContextCache:
    """Contexts by the fingerprint of what they were built from; ``keep`` drops the others."""

    def __init__(self) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._used: set[str] = set()

    def get(self, key: str) -> ssl.SSLContext | None:
        self._used.add(key)
        return self._contexts.get(key)

    def put(self, key: str, context: ssl.SSLContext) -> None:
        self._used.add(key)
        self._contexts[key] = context

    def prune(self) -> None:
        """Forget the contexts no compilation asked for since the last prune."""
        self._contexts = {k: v for k, v in self._contexts.items() if k in self._used}
        self._used = set()


def compile_ssl(
    value: Mapping[str, Any], cache: ContextCache | None = None
) -> tuple[list[str], ssl.SSLContext]:
    """The server names of a stored ssl and the context serving them; ``CompileError`` when
    its certificate or key cannot be used (or its key cannot be unsealed here)."""
    try:
        parsed = Ssl.model_validate({k: v for k, v in value.items() if k not in _STAMPS})
    except ValidationError as exc:
        raise CompileError(f"invalid configuration: {describe(exc)}") from None
    names = parsed.server_names()
    key = fingerprint({"cert": parsed.cert, "key": parsed.key})
    context = cache.get(key) if cache is not None else None
    if context is None:
        try:
            context = server_context(parsed.cert, credentials.unseal(parsed.key))
        except (CertificateError, credentials.SealError) as exc:
            raise CompileError(str(exc)) from None
        if cache is not None:
            cache.put(key, context)
    return names, context
