"""Which admin keys are in force: configured ones, or one generated once and kept in the store."""

from __future__ import annotations

import secrets

from llmgate.admin.auth import AdminKeys
from llmgate.settings import Settings
from llmgate.store import Store

GENERATED_KEY_SETTING = "generated_admin_key"


async def resolve_admin_keys(settings: Settings, store: Store) -> tuple[AdminKeys, str | None]:
    """The keys, and the generated admin key if it was generated just now (to print once)."""
    if settings.admin_key:
        return AdminKeys(settings.admin_key, settings.viewer_key), None
    candidate = secrets.token_hex(16)  # 32 characters
    key, created = await store.setting_or_default(GENERATED_KEY_SETTING, candidate)
    return AdminKeys(key, settings.viewer_key), key if created else None
