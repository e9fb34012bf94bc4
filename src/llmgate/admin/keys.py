"""Which admin keys are in force: configured ones, or one generated once and kept in the store.

The generated key is stored as its digest (``sha256$<hex>``), so a copy of the store does not
open the admin API; it is printed once, when generated.  A store written by an older llmgate
holds the key itself: it keeps working, and its value is replaced by the digest on start.
"""

from __future__ import annotations

import logging
import secrets

from llmgate.admin.auth import AdminKeys, key_digest
from llmgate.settings import Settings
from llmgate.store import Store

GENERATED_KEY_SETTING = "generated_admin_key"
DIGEST_PREFIX = "sha256$"

log = logging.getLogger("llmgate.admin")


async def resolve_admin_keys(settings: Settings, store: Store) -> tuple[AdminKeys, str | None]:
    """The keys, and the generated admin key if it was generated just now (to print once)."""
    if settings.admin_key:
        return AdminKeys(settings.admin_key, settings.viewer_key), None
    candidate = secrets.token_hex(16)  # 32 characters
    stored = DIGEST_PREFIX + key_digest(candidate).hex()
    value, created = await store.setting_or_default(GENERATED_KEY_SETTING, stored)
    if created:
        return AdminKeys.from_digest(key_digest(candidate), settings.viewer_key), candidate
    if value.startswith(DIGEST_PREFIX):
        return AdminKeys.from_digest(
            bytes.fromhex(value[len(DIGEST_PREFIX) :]), settings.viewer_key
        ), None
    # A plaintext key from an older llmgate: still valid; keep only its digest from now on.
    migrated = DIGEST_PREFIX + key_digest(value).hex()
    if await store.replace_setting(GENERATED_KEY_SETTING, value, migrated):
        log.info("the stored admin key is now kept as a digest")
    return AdminKeys(value, settings.viewer_key), None


async def rotate_admin_key(store: Store) -> str:
    """A new generated admin key, its digest stored in place of the old one (which stops
    working when ``llmgate serve`` next starts); returns the key, to print once."""
    key = secrets.token_hex(16)
    stored = DIGEST_PREFIX + key_digest(key).hex()
    while True:
        value, created = await store.setting_or_default(GENERATED_KEY_SETTING, stored)
        if created or await store.replace_setting(GENERATED_KEY_SETTING, value, stored):
            return key
