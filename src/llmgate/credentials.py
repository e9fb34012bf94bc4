"""Consumer secrets at rest: basic-auth passwords as passlib hashes, key-auth keys as digests.

A value that is a ``$env://NAME`` reference (or holds one) is stored as written and resolved
when the runtime snapshot is compiled.  Hashing is idempotent: a value that already is one of
our hashes is kept, so a GET body PUT back does not hash twice.  Verification compares in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac

from passlib.context import CryptContext

# pbkdf2_sha256 is pure hashlib (no bcrypt: passlib 1.7.4's bcrypt backend breaks with bcrypt 5).
_passwords = CryptContext(schemes=["pbkdf2_sha256"], pbkdf2_sha256__default_rounds=29000)

KEY_DIGEST_PREFIX = "sha256$"
ENV_REF = "$env://"


def has_env_ref(value: str) -> bool:
    return ENV_REF in value


def is_password_hash(value: str) -> bool:
    return _passwords.identify(value) is not None


def hash_password(password: str) -> str:
    """The stored form of a basic-auth password (hash, or the env reference as written)."""
    if has_env_ref(password) or is_password_hash(password):
        return password
    return _passwords.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a hash, or a resolved plaintext)."""
    if is_password_hash(stored):
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
