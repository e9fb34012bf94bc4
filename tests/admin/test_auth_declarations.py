"""The admin reads what auth plugins declare (``AuthPlugin.stored_as``, ``.unique_field``): a new
auth plugin gets its secrets stored in their at-rest form and its unique field checked without
any admin code naming it (no network)."""

from __future__ import annotations

import pytest

from llmgate import credentials
from llmgate.admin.resources import _unique_values, hash_secrets
from llmgate.plugin_api.auth_consumer import AuthPlugin
from llmgate.plugin_api.config import PluginConfig
from llmgate.plugins import REGISTRY


class _TokenConsumer(PluginConfig):
    token: str
    note: str | None = None


class _TokenAuth(AuthPlugin[PluginConfig]):
    """A made-up auth plugin, registered only for these tests."""

    name = "token-auth-test"
    priority = 1
    Config = PluginConfig
    ConsumerConfig = _TokenConsumer
    stored_as = {"token": lambda token: "stored:" + token[::-1]}
    unique_field = "token"


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, _TokenAuth.name, _TokenAuth)


def test_a_new_auth_plugins_declared_fields_are_stored_in_their_at_rest_form() -> None:
    conf = {"username": "jack", "plugins": {"token-auth-test": {"token": "abc", "note": "n"}}}
    stored = hash_secrets(conf)
    assert stored["plugins"]["token-auth-test"] == {"token": "stored:cba", "note": "n"}
    assert conf["plugins"]["token-auth-test"]["token"] == "abc"  # the input is not changed


def test_a_new_auth_plugins_unique_field_is_compared_in_its_stored_form() -> None:
    plugins = {"token-auth-test": {"token": "abc"}, "limit-count": {"count": 1}}
    assert list(_unique_values(plugins)) == [("token-auth-test", "token", "stored:cba")]


def test_the_built_in_auth_plugins_declare_theirs() -> None:
    plugins = {
        "basic-auth": {"username": "jack", "password": "pw"},
        "key-auth": {"key": "k-1"},
    }
    assert list(_unique_values(plugins)) == [
        ("basic-auth", "username", "jack"),
        ("key-auth", "key", credentials.key_digest("k-1")),
    ]
    stored = hash_secrets({"plugins": plugins})["plugins"]
    assert credentials.verify_password("pw", stored["basic-auth"]["password"])
    assert stored["basic-auth"]["password"] != "pw"
    assert stored["key-auth"]["key"] == credentials.key_digest("k-1")
