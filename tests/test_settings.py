"""Settings: precedence, parsing, and one clear line for each invalid value."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgate.errors import SettingsError
from llmgate.http.limits import ClientLimits, connections_for, open_file_limit
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
        ({"proxy_listen": "1.2.3.4:\u0663"}, {}, "invalid proxy-listen"),
        ({}, {"LLMGATE_METRICS_LISTEN": "[::1]:\u00b2"}, "invalid metrics-listen"),
        ({}, {"LLMGATE_METRICS_LISTEN": "x:"}, "invalid metrics-listen"),
        ({"database_url": "mysql://x"}, {}, "invalid database-url"),
        ({}, {"LLMGATE_DATABASE_URL": "::::"}, "invalid database-url"),
        ({"workers": "0"}, {}, "invalid workers"),
        ({"workers": "two"}, {}, "invalid workers"),
        ({"workers": True}, {}, "invalid workers True: not a number"),
        ({"keepalive_requests": True}, {}, "invalid keepalive-requests True: not a number"),
        ({"send_timeout": True}, {}, "invalid send-timeout True: not a number"),
        ({"reload_interval": "fast"}, {}, "invalid reload-interval"),
        ({"redis_url": "localhost:6379"}, {}, "invalid redis-url"),
        ({}, {"LLMGATE_SPOOL_DIR": " "}, "invalid spool-dir"),
        ({}, {"LLMGATE_REDIS_URL": "redis://127.0.0.1:port/0"}, "invalid redis-url"),
        ({}, {"LLMGATE_ADMIN_KEY": "two words"}, "invalid admin_key"),
        (
            {"admin_listen": "0.0.0.0:9180"},
            {"LLMGATE_ADMIN_KEY": "short"},
            "refusing to expose the admin API on 0.0.0.0:9180 with a key shorter than 8 characters: admin_key",
        ),
        (
            {"admin_listen": "0.0.0.0:9180"},
            {"LLMGATE_ADMIN_KEY": "a-long-enough-key", "LLMGATE_VIEWER_KEY": "viewer"},
            "shorter than 8 characters: viewer_key",
        ),
        ({"config": "/nonexistent/llmgate.toml"}, {}, "cannot read config file"),
        ({"admin_listen": "0.0.0.0:9180"}, {}, "refusing to expose the admin API"),
    ],
)
def test_invalid_settings_raise_one_line(flags: dict, env: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(flags, environ=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_redis_url_is_refused_without_showing_its_password() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({}, environ={"LLMGATE_REDIS_URL": "redis://u:s3cret@h:port/0"})
    assert "s3cret" not in str(info.value) and "h:port" in str(info.value)


def test_exposed_admin_is_fine_with_an_explicit_key() -> None:
    settings = load_settings(
        {"admin_listen": "0.0.0.0:9180"}, environ={"LLMGATE_ADMIN_KEY": "a-long-enough-key"}
    )
    assert not settings.admin_listen.is_loopback
    # A proxy-only process has no admin API to expose.
    assert load_settings({"admin_listen": "0.0.0.0:9180", "role": "proxy"}, environ={})


def test_short_keys_are_fine_on_a_loopback_admin_api() -> None:
    """APISIX takes any admin key; llmgate asks for 8 characters only where the admin API is
    exposed beyond the machine."""
    settings = load_settings({}, environ={"LLMGATE_ADMIN_KEY": "admin", "LLMGATE_VIEWER_KEY": "ro"})
    assert (settings.admin_key, settings.viewer_key) == ("admin", "ro")


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


def test_client_limits_default_to_nginx() -> None:
    limits = load_settings({}, environ={}).client_limits()
    assert (limits.header_timeout, limits.body_timeout) == (60.0, 60.0)
    assert (limits.keepalive_timeout, limits.keepalive_requests) == (75.0, 1000)
    assert limits.merge_slashes is True
    assert limits.send_timeout == 60.0  # nginx's send_timeout
    assert limits.buffered_bodies_max_bytes == 256 * 1024**2
    assert limits.max_connections == 0  # from the open-file limit:
    assert 64 <= limits.connection_cap() < open_file_limit()


def test_client_limits_from_flags_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "client_header_timeout = 5\nkeepalive_requests = 10\nmerge_slashes = false\n"
        "max_connections = 500\n"
    )
    env = {
        "LLMGATE_CONFIG": str(config),
        "LLMGATE_CLIENT_BODY_TIMEOUT": "7.5",
        "LLMGATE_KEEPALIVE_REQUESTS": "20",
        "LLMGATE_BUFFERED_BODIES_MAX_BYTES": "64M",
    }
    settings = load_settings({"keepalive_timeout": "3", "send_timeout": "2.5"}, environ=env)
    limits = settings.client_limits()
    assert limits == ClientLimits(
        header_timeout=5.0,
        body_timeout=7.5,
        keepalive_timeout=3.0,
        keepalive_requests=20,
        max_connections=500,
        merge_slashes=False,
        send_timeout=2.5,
        buffered_bodies_max_bytes=64 * 1024**2,
    )
    assert limits.connection_cap() == 500
    assert load_settings({"merge_slashes": "on"}, environ={}).merge_slashes is True


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"client_header_timeout": "0"}, "invalid client-header-timeout '0': must be 0.1-3600"),
        ({"client_body_timeout": "soon"}, "invalid client-body-timeout 'soon': not a number"),
        ({"keepalive_timeout": "99999"}, "invalid keepalive-timeout"),
        ({"keepalive_requests": "0"}, "invalid keepalive-requests"),
        ({"keepalive_requests": "1.5"}, "invalid keepalive-requests '1.5': not an integer"),
        ({"max_connections": "-1"}, "invalid max-connections '-1': must be 0-10000000"),
        ({"keepalive_requests": "-5"}, "invalid keepalive-requests '-5': must be 1-1000000000"),
        ({"merge_slashes": "maybe"}, "invalid merge-slashes 'maybe': expected on or off"),
        ({"send_timeout": "0"}, "invalid send-timeout '0': must be 0.1-3600"),
        ({"buffered_bodies_max_bytes": "12"}, "invalid buffered-bodies-max-bytes '12'"),
    ],
)
def test_invalid_client_limits(flags: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(flags, environ={})
    assert message in str(info.value)


def test_connection_cap_leaves_room_for_upstreams() -> None:
    assert connections_for(20000) == (20000 - 256) // 2
    assert connections_for(100) == 64


def test_prices_and_usage_calls_days(tmp_path: Path) -> None:
    table = tmp_path / "prices.json"
    table.write_text('{"prices": [{"model": "gpt-4o", "prompt": 2.5, "completion": 10}]}')
    env = {"LLMGATE_PRICES": str(table), "LLMGATE_USAGE_CALLS_DAYS": "7"}
    settings = load_settings({}, environ=env)
    assert (settings.prices, settings.usage_calls_days) == (str(table), 7)
    assert load_settings({}, environ={}).usage_calls_days == 30
    table.write_text('{"prices": [{"model": "gpt-4o", "prompt": -1}]}')
    with pytest.raises(SettingsError, match=r"invalid prices: .*prices.0.prompt"):
        load_settings({}, environ=env)
    with pytest.raises(SettingsError, match="invalid prices: cannot read"):
        load_settings({}, environ={"LLMGATE_PRICES": str(tmp_path / "none.json")})
    with pytest.raises(SettingsError, match="invalid usage_calls_days"):
        load_settings({}, environ={"LLMGATE_USAGE_CALLS_DAYS": "-1"})


def test_abuse_limits() -> None:
    defaults = load_settings({}, environ={})
    assert defaults.cache_max_bytes == 1024**3 and defaults.cache_max_entries == 400_000
    assert defaults.cache_memory_max_bytes == 50 * 1024**2
    assert defaults.auth_failures_per_minute == 20
    env = {
        "LLMGATE_CACHE_MAX_BYTES": "4M",
        "LLMGATE_CACHE_MEMORY_MAX_BYTES": "512KiB",
        "LLMGATE_CACHE_MAX_ENTRIES": "1000",
        "LLMGATE_AUTH_FAILURES_PER_MINUTE": "0",
    }
    settings = load_settings({}, environ=env)
    assert settings.cache_max_bytes == 4 * 1024**2
    assert settings.cache_memory_max_bytes == 512 * 1024
    assert settings.cache_max_entries == 1000 and settings.auth_failures_per_minute == 0
    assert load_settings({}, environ={"LLMGATE_CACHE_MAX_BYTES": "1073741824"}).cache_max_bytes
    for name, value, message in [
        ("LLMGATE_CACHE_MAX_BYTES", "lots", "invalid cache-max-bytes"),
        ("LLMGATE_CACHE_MAX_BYTES", "12", "at least 1024 bytes"),
        ("LLMGATE_CACHE_MAX_ENTRIES", "0", "invalid cache-max-entries"),
        ("LLMGATE_AUTH_FAILURES_PER_MINUTE", "-1", "invalid auth-failures-per-minute"),
    ]:
        with pytest.raises(SettingsError, match=message):
            load_settings({}, environ={name: value})


def test_two_listeners_on_one_address_are_named_before_start_up() -> None:
    """``--proxy-listen`` and ``--metrics-listen`` on one port: the check names the second
    listener (binding without listening let both through, and aiohttp's own bind error,
    naming no listener, stopped start-up later)."""
    from llmgate.settings import ListenerBusy, check_listeners
    from tests.processes import free_port

    port = free_port()
    settings = load_settings(
        {
            "proxy_listen": f"127.0.0.1:{port}",
            "metrics_listen": f"127.0.0.1:{port}",
            "admin_listen": f"127.0.0.1:{free_port()}",
            "proxy_listen_tls": "off",
        },
        environ={},
    )
    with pytest.raises(ListenerBusy, match=f"metrics 127.0.0.1:{port}: Address already in use"):
        check_listeners(settings)
