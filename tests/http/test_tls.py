"""SNI matching (APISIX's order) and private keys sealed at rest."""

from __future__ import annotations

import ssl

import pytest

from llmgate import credentials
from llmgate.http.tls import CertificateError, SniIndex, server_context
from tests.net import TestCA


def test_exact_names_win_then_the_longest_wildcard() -> None:
    a, b, c = (ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) for _ in range(3))
    index = SniIndex(
        [(["A.test", "*.wild.test"], a), (["*.deep.wild.test"], b), (["x.wild.test"], c)]
    )
    assert index.find("a.TEST") is a
    assert index.find("x.wild.test") is c  # exact before wildcard
    assert index.find("y.wild.test") is a
    assert index.find("y.z.wild.test") is a  # a wildcard covers every level below it
    assert index.find("q.deep.wild.test") is b  # the longest suffix wins
    assert index.find("wild.test") is None  # not the bare domain
    assert index.find("other.test") is None
    assert index.find(None) is None and index.find("") is None


def test_server_context_loads_a_pair_and_refuses_a_mismatch() -> None:
    ca = TestCA()
    cert, key = ca.issue("a.test")
    _, other_key = ca.issue("b.test")
    assert isinstance(server_context(cert, key), ssl.SSLContext)
    with pytest.raises(CertificateError, match="failed to set PEM cert and key"):
        server_context(cert, other_key)


def test_keys_are_sealed_with_the_first_passphrase_and_unsealed_with_any(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(credentials.SSL_KEY_ENV, raising=False)
    with pytest.raises(credentials.SealError, match="LLMGATE_SSL_KEY is not set"):
        credentials.seal("-----BEGIN PRIVATE KEY-----")
    monkeypatch.setenv(credentials.SSL_KEY_ENV, "old")
    sealed_old = credentials.seal("secret key")
    assert credentials.is_sealed(sealed_old) and "secret" not in sealed_old
    assert credentials.seal(sealed_old) == sealed_old  # never sealed twice
    monkeypatch.setenv(credentials.SSL_KEY_ENV, "new, old")  # rotation: new first
    assert credentials.unseal(sealed_old) == "secret key"
    sealed_new = credentials.seal("secret key")
    assert sealed_new != sealed_old
    monkeypatch.setenv(credentials.SSL_KEY_ENV, "new")
    assert credentials.unseal(sealed_new) == "secret key"
    with pytest.raises(credentials.SealError, match="none of the passphrases"):
        credentials.unseal(sealed_old)
