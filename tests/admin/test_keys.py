"""The generated admin key: printed once, kept in the store as a digest only; a store from an
older llmgate that holds the key itself keeps working and is migrated to the digest."""

from __future__ import annotations

import hashlib

from llmgate.admin.keys import GENERATED_KEY_SETTING, resolve_admin_keys
from llmgate.settings import Settings
from llmgate.store import Store


async def _stored(store: Store) -> str | None:
    async with store.read() as reader:
        return await reader.setting(GENERATED_KEY_SETTING)


async def test_generated_key_is_stored_as_a_digest(store: Store) -> None:
    keys, generated = await resolve_admin_keys(Settings(), store)
    assert generated is not None and len(generated) == 32
    stored = await _stored(store)
    assert stored == "sha256$" + hashlib.sha256(generated.encode()).hexdigest()
    assert generated not in stored
    assert keys.role_of(generated) == "admin"
    assert keys.role_of(generated[:-1]) is None

    again, printed = await resolve_admin_keys(Settings(viewer_key="viewer-key-1"), store)
    assert printed is None  # shown only when generated
    assert again.role_of(generated) == "admin"
    assert again.role_of("viewer-key-1") == "viewer"


async def test_a_plaintext_key_from_an_older_store_keeps_working_and_is_migrated(
    store: Store,
) -> None:
    legacy = "0123456789abcdef0123456789abcdef"
    await store.setting_or_default(GENERATED_KEY_SETTING, legacy)
    keys, printed = await resolve_admin_keys(Settings(), store)
    assert printed is None
    assert keys.role_of(legacy) == "admin"
    assert await _stored(store) == "sha256$" + hashlib.sha256(legacy.encode()).hexdigest()
    keys, _ = await resolve_admin_keys(Settings(), store)  # and after the migration
    assert keys.role_of(legacy) == "admin"


async def test_a_configured_key_is_not_stored(store: Store) -> None:
    keys, generated = await resolve_admin_keys(Settings(admin_key="configured-key"), store)
    assert generated is None
    assert keys.role_of("configured-key") == "admin"
    assert await _stored(store) is None
