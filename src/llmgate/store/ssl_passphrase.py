"""The passphrase that seals ssls' private keys when ``LLMGATE_SSL_KEY`` is not set.

APISIX seals them with its default keyring (config.yaml's ``data_encryption.keyring``) unless
told otherwise; llmgate generates a random passphrase once, keeps it in the store's
``system_settings`` (never in a resource: GETs and ``config dump`` show only sealed keys) and
puts it in this process's environment, which the data-plane workers inherit.  Setting
``LLMGATE_SSL_KEY`` keeps the passphrase out of the store altogether.
"""

from __future__ import annotations

import os
import secrets

from llmgate.credentials import SSL_KEY_ENV
from llmgate.store.repository import Store

GENERATED_SSL_KEY_SETTING = "generated_ssl_key"


async def use_stored_ssl_passphrase(store: Store) -> bool:
    """With ``LLMGATE_SSL_KEY`` unset (or blank), set it to the store's generated passphrase,
    generating that on first use; whether it did."""
    if os.environ.get(SSL_KEY_ENV, "").strip():
        return False
    value, _ = await store.setting_or_default(GENERATED_SSL_KEY_SETTING, secrets.token_urlsafe(32))
    os.environ[SSL_KEY_ENV] = value
    return True
