"""Settings: precedence, parsing, and one clear line for each invalid value."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgate.errors import SettingsError
from llmgate.settings import DEFAULT_DATABASE_URL, Listen, load_settings


def test_defaults() -> None:
    settings = load_settings({}, environ={})
    assert settings.admin_listen == Listen("127.0.0.1", 9180)
    assert settings.proxy_listen == Listen("0.0.0.0", 9080)
    assert settings.metrics_listen == Listen("127.0.0.1", 9091)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.admin_key is None and settings.role == "all" and settings.workers == 1


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "llmgate.toml"
    config.write_text(
        'proxy_listen = "127.0.0.1:7000"\nadmin_listen = "127.0.0.1:7001"\nworkers = 3\n'
    )
    env = {"LLMGATE_CONFIG": str(config), "LLMGATE_ADMIN_LISTEN": "127.0.0.1:8001"}
    settings = load_settings({"workers": "2"}, environ=env)
    assert settings.proxy_listen == Listen("127.0.0.1", 7000)  # file
    assert settings.admin_listen == Listen("127.0.0.1", 8001)  # environment over file
    assert settings.workers == 2  # flag over file


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"admin_listen": "nope"}, {}, "invalid admin-listen"),
        ({"proxy_listen": "1.2.3.4:99999"}, {}, "invalid proxy-listen"),
        ({}, {"LLMGATE_METRICS_LISTEN": "x:"}, "invalid metrics-listen"),
        ({"database_url": "mysql://x"}, {}, "invalid database-url"),
        ({}, {"LLMGATE_DATABASE_URL": "::::"}, "invalid database-url"),
        ({"workers": "0"}, {}, "invalid workers"),
        ({"workers": "two"}, {}, "invalid workers"),
        ({"reload_interval": "fast"}, {}, "invalid reload-interval"),
        ({"redis_url": "localhost:6379"}, {}, "invalid redis-url"),
        ({}, {"LLMGATE_ADMIN_KEY": "short"}, "invalid admin_key"),
        ({"config": "/nonexistent/llmgate.toml"}, {}, "cannot read config file"),
        ({"admin_listen": "0.0.0.0:9180"}, {}, "refusing to expose the admin API"),
    ],
)
def test_invalid_settings_raise_one_line(flags: dict, env: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(flags, environ=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_exposed_admin_is_fine_with_an_explicit_key() -> None:
    settings = load_settings(
        {"admin_listen": "0.0.0.0:9180"}, environ={"LLMGATE_ADMIN_KEY": "a-long-enough-key"}
    )
    assert not settings.admin_listen.is_loopback
    # A proxy-only process has no admin API to expose.
    assert load_settings({"admin_listen": "0.0.0.0:9180", "role": "proxy"}, environ={})


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('admin_lisen = "127.0.0.1:1"\n')
    with pytest.raises(SettingsError, match="unknown setting 'admin_lisen'"):
        load_settings({"config": str(config)}, environ={})


def test_log_and_standalone_settings_from_toml_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "llmgate.toml"
    config.write_text('log_level = "info"\nlog_format = "json"\nstandalone = "apisix.yaml"\n')
    settings = load_settings({"config": str(config)}, environ={})
    assert (settings.log_level, settings.log_format, settings.standalone) == (
        "info",
        "json",
        "apisix.yaml",
    )
    settings = load_settings({"log_level": "debug"}, environ={"LLMGATE_LOG_FORMAT": "text"})
    assert (settings.log_level, settings.log_format, settings.standalone) == ("debug", "text", None)
    defaults = load_settings({}, environ={})
    assert (defaults.log_level, defaults.log_format) == ("warning", "text")
    with pytest.raises(SettingsError, match="invalid log-level 'verbose'"):
        load_settings({}, environ={"LLMGATE_LOG_LEVEL": "verbose"})
