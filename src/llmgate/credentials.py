"""Secrets at rest: basic-auth passwords as passlib hashes, key-auth keys as digests, TLS
private keys sealed with a passphrase from the environment (LLMGATE_SSL_KEY).

A value that is a ``$env://NAME`` reference (or holds one) is stored as written and resolved
when the runtime snapshot is compiled.  Hashing is idempotent: a value that already is one of
our hashes is kept, so a GET body PUT back does not hash twice.  Verification compares in
constant time.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from passlib.context import CryptContext

# pbkdf2_sha256 is pure hashlib (no bcrypt: passlib 1.7.4's bcrypt backend breaks with bcrypt 5).
_passwords = CryptContext(schemes=["pbkdf2_sha256"], pbkdf2_sha256__default_rounds=29000)

KEY_DIGEST_PREFIX = "sha256$"
ENV_REF = "$env://"


def has_env_ref(value: str) -> bool:
    return ENV_REF in value


@functools.lru_cache(maxsize=4096)
def is_password_hash(value: str) -> bool:
    """Whether ``value`` is a passlib hash (cached: the data plane asks on every request, for
    the stored passwords of its config)."""
    return _passwords.identify(value) is not None


def hash_password(password: str) -> str:
    """The stored form of a basic-auth password (hash, or the env reference as written)."""
    if has_env_ref(password) or is_password_hash(password):
        return password
    return _passwords.hash(password)


@functools.cache
def decoy_hash() -> str:
    """A hash no password matches, checked for a user name nobody has: a request naming an
    unknown user then costs the same hash as a wrong password, and its answer's timing does
    not tell which user names exist."""
    return _passwords.hash(os.urandom(32).hex())


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a hash, or a resolved plaintext)."""
    if is_password_hash(stored):
        # pbkdf2's HMAC pads its key with NULs: "pw\x00" would match the hash of "pw".
        if "\x00" in password:
            return False
        try:
            return _passwords.verify(password, stored)
        except ValueError:
            return False
    return hmac.compare_digest(password.encode(), stored.encode())


def key_digest(key: str) -> str:
    """The SHA-256 digest under which a key-auth key is stored and looked up."""
    return KEY_DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_key_digest(value: str) -> bool:
    return value.startswith(KEY_DIGEST_PREFIX) and len(value) == len(KEY_DIGEST_PREFIX) + 64


def store_key(key: str) -> str:
    """The stored form of a key-auth key (digest, or the env reference as written)."""
    if has_env_ref(key) or is_key_digest(key):
        return key
    return key_digest(key)


# --- private keys at rest (ssls) -----------------------------------------------------------
#
# A TLS private key is stored sealed: AES-256-GCM under a key derived (SHA-256) from the
# passphrase in LLMGATE_SSL_KEY.  The variable may hold several passphrases separated by
# commas: the first seals, each is tried to unseal (rotation: put the new one first, re-PUT
# the certificates, then drop the old one).  Nothing is stored when the variable is unset.

SSL_KEY_ENV = "LLMGATE_SSL_KEY"
SEALED_PREFIX = "$llmgate-sealed$v1$"
_SEAL_CONTEXT = b"llmgate ssl private key"


class SealError(ValueError):
    """A key that cannot be sealed or unsealed here (the message names the variable)."""


def _keyring() -> list[bytes]:
    passphrases = os.environ.get(SSL_KEY_ENV, "")
    return [
        hashlib.sha256(p.strip().encode()).digest() for p in passphrases.split(",") if p.strip()
    ]


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


def seal(plaintext: str) -> str:
    """``plaintext`` encrypted with the first passphrase of LLMGATE_SSL_KEY (kept as is when it
    is sealed already)."""
    if is_sealed(plaintext):
        return plaintext
    keys = _keyring()
    if not keys:
        raise SealError(
            f"{SSL_KEY_ENV} is not set: llmgate stores private keys only encrypted, with a "
            f"passphrase from {SSL_KEY_ENV}"
        )
    nonce = os.urandom(12)
    sealed = AESGCM(keys[0]).encrypt(nonce, plaintext.encode(), _SEAL_CONTEXT)
    return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal(value: str) -> str:
    """The plaintext of a sealed value (a value that is not sealed is returned as is)."""
    if not is_sealed(value):
        return value
    try:
        raw = base64.b64decode(value[len(SEALED_PREFIX) :], validate=True)
    except ValueError:
        raise SealError("a sealed private key is corrupt") from None
    for key in _keyring():
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], _SEAL_CONTEXT).decode()
        except (InvalidTag, ValueError):
            continue
    raise SealError(
        f"cannot decrypt a stored private key: {SSL_KEY_ENV} holds none of the passphrases "
        "it was encrypted with"
    )


# The attribute of each auth plugin that must be unique across consumers and credentials, for
# the store's credential index (the store sits below the plugins; ``AuthPlugin.unique_field``
# says the same, and tests/store/test_changes.py checks that they agree).
UNIQUE_ATTRS = {"basic-auth": "username", "key-auth": "key"}


_UNIQUE_MAX = 200


def index_form(stored: str) -> str:
    """A unique attribute's stored form as the index holds it: itself, or a digest of it
    when it is longer than 200 characters."""
    if len(stored) > _UNIQUE_MAX:
        return "long$" + hashlib.sha256(stored.encode()).hexdigest()
    return stored


def unique_form(plugin: str, value: str) -> str:
    """How a unique attribute is compared (and indexed): a key-auth key as its digest, a
    username as is (``index_form`` of either)."""
    return index_form(store_key(value) if plugin == "key-auth" else value)


def unique_credentials(plugins: object) -> list[tuple[str, str, str]]:
    """(plugin, attribute, compared form) of each unique credential attribute in a consumer's
    or credential's ``plugins``."""
    found: list[tuple[str, str, str]] = []
    if not isinstance(plugins, dict):
        return found
    for plugin, attr in UNIQUE_ATTRS.items():
        conf = plugins.get(plugin)
        if isinstance(conf, dict) and isinstance(conf.get(attr), str):
            found.append((plugin, attr, unique_form(plugin, conf[attr])))
    return found
