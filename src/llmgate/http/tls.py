"""TLS on the data plane: a server context per certificate, the index that picks one by
the client's SNI, and the client context of an HTTPS upstream (with a client certificate for
mutual TLS).

``server_context`` and ``upstream_context`` build an ``ssl.SSLContext`` from PEM text.
Python's ssl module loads keys from files only, so the key is written re-encrypted with a
one-time random password (the plaintext key never touches the disk) and the files are removed
at once (``load_certificate``).

``SniIndex`` matches as APISIX's SNI router: an exact name first, then the longest wildcard
suffix (``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``, not
``example.com``), case-insensitively.  A handshake with no SNI or an unknown one fails, as in
APISIX without a ``fallback_sni``.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class CertificateError(ValueError):
    """A certificate or key that cannot be served (the message says which and why)."""


def server_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding this certificate (chain) and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    load_certificate(context, cert_pem, key_pem)
    return context


def upstream_context(
    verify: bool, cert_pem: str | None = None, key_pem: str | None = None
) -> ssl.SSLContext:
    """The client context of an HTTPS upstream: its certificate checked only when ``verify``
    (as APISIX's ``tls.verify``), and presenting ``cert_pem``/``key_pem`` when given (mutual
    TLS).  Built once per upstream, never per request."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    if cert_pem is not None and key_pem is not None:
        load_certificate(context, cert_pem, key_pem)
    return context


def load_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """Load a certificate (chain) and its key, given as PEM text, into ``context``;
    ``CertificateError`` saying which does not parse or that they do not match.

    ``load_cert_chain`` reads files only: both go to a private temporary folder, the key
    re-encrypted with a one-time random password (the plaintext key never touches the disk),
    and the folder is removed at once."""
    try:
        x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError as exc:
        raise CertificateError(f"failed to parse cert: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"failed to parse key: {exc}") from None
    password = secrets.token_bytes(32)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="llmgate-tls-") as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_text(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(locked)
        try:
            context.load_cert_chain(cert_file, key_file, password=password)
        except ssl.SSLError as exc:
            raise CertificateError(f"failed to set PEM cert and key: {exc.reason or exc}") from None


class SniIndex:
    """Server names -> the context serving them."""

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, entries: Iterable[tuple[Iterable[str], ssl.SSLContext]]) -> None:
        self._exact: dict[str, ssl.SSLContext] = {}
        wildcards: dict[str, ssl.SSLContext] = {}
        for names, context in entries:
            for name in names:
                name = name.lower()
                if name.startswith("*."):
                    wildcards.setdefault(name[1:], context)  # ".example.com"
                else:
                    self._exact.setdefault(name, context)
        # Longest suffix first: the most specific wildcard wins.
        self._wildcards = sorted(wildcards.items(), key=lambda item: -len(item[0]))

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcards)

    def find(self, server_name: str | None) -> ssl.SSLContext | None:
        if not server_name:
            return None
        name = server_name.lower().rstrip(".")
        context = self._exact.get(name)
        if context is not None:
            return context
        for suffix, wildcard in self._wildcards:
            if name.endswith(suffix) and len(name) > len(suffix):
                return wildcard
        return None


EMPTY_INDEX = SniIndex(())
UNKNOWN_NAME = ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME


def sni_listener_context(current: Callable[[], SniIndex]) -> ssl.SSLContext:
    """The listener's context: each handshake switches to the context ``current()`` holds for
    the client's SNI (read per handshake, so a replaced certificate is served at once), or
    fails when there is none."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def choose(
        sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> int | None:
        chosen = current().find(name)
        if chosen is None:
            return (
                ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
                if name
                else ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
            )
        sock.context = chosen
        return None

    context.sni_callback = choose
    return context
