import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.http_logger import HttpLogger

VALID = [
    pytest.param({"uri": "http://127.0.0.1:1980/log"}, id="uri"),
    pytest.param({"uri": "https://logs.example.com"}, id="https"),
    pytest.param({"uri": "HTTPS://logs.example.com"}, id="scheme-in-capitals"),
    pytest.param({"uri": "http://[::1]:8080/x"}, id="ipv6"),
    pytest.param({"uri": "http://u:p@h:81/x?a=1"}, id="userinfo"),
    pytest.param({"uri": "http://log_collector:8080/"}, id="underscore-host"),
    pytest.param({"uri": "http://h:8080?a=1"}, id="port-then-query"),
    pytest.param({"uri": "$env://LOG_URI"}, id="env-ref"),
    pytest.param(
        {
            "uri": "http://a",
            "auth_header": "Bearer $env://LOG_TOKEN",
            "timeout": 10,
            "concat_method": "new_line",
            "batch_max_size": 1,
            "inactive_timeout": 1,
        },
        id="options",
    ),
]

INVALID = [
    pytest.param({}, "uri", id="no-uri"),
    pytest.param({"uri": "logs.example.com/x"}, "uri", id="no-scheme"),
    pytest.param({"uri": "http://h:\u0663/"}, "invalid port", id="arabic-indic-port"),
    pytest.param({"uri": "http://h:\u00b2/x"}, "invalid port", id="superscript-port"),
    pytest.param({"uri": "http://[::1]:\u0663/"}, "invalid port", id="ipv6-arabic-port"),
    pytest.param({"uri": "http://h:99999/"}, "invalid port", id="port-out-of-range"),
    pytest.param({"uri": "http://h:80x/"}, "invalid port", id="port-not-a-number"),
    pytest.param({"uri": "http://h\u0663:80/"}, "uri", id="non-ascii-host"),
    # APISIX posts plain HTTP to any other scheme; llmgate could not send there at all.
    pytest.param({"uri": "ftp://h/logs"}, "unsupported scheme", id="ftp"),
    pytest.param({"uri": "xx://h"}, "unsupported scheme", id="unknown-scheme"),
    pytest.param({"uri": "http://a", "timeout": 0}, "timeout", id="timeout"),
    pytest.param({"uri": "http://a", "concat_method": "xml"}, "concat_method", id="concat"),
    pytest.param({"uri": "http://a", "batch_max_size": 0}, "batch_max_size", id="batch-size"),
    pytest.param({"uri": "http://a", "max_retry_count": -1}, "max_retry_count", id="retries"),
    pytest.param({"uri": "http://a", "ssl_verify": "yes"}, "ssl_verify", id="ssl-verify"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    HttpLogger.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        HttpLogger.Config.model_validate(conf)


def test_defaults() -> None:
    conf = HttpLogger.Config.model_validate({"uri": "http://a"})
    assert (conf.timeout, conf.concat_method, conf.batch_max_size, conf.name) == (
        3,
        "json",
        1000,
        "http logger",
    )


def test_an_env_uri_is_checked_once_its_value_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the variable is set (the admin's process: ``validating``; a data-plane node), its
    value is checked as a literal uri is, and never shown; where it is not, the admin accepts
    the reference and a data-plane node does not compile it (last good version or 503): the
    uri is never first found wrong when a batch is sent."""
    from llmgate.runtime.instances import CompileError, validated

    conf = {"uri": "$env://LOG_URI"}
    monkeypatch.setenv("LOG_URI", "ftp://collector.internal:21/x")
    for validating in (True, False):
        with pytest.raises(CompileError, match="unsupported scheme") as info:
            validated(HttpLogger.Config, "http-logger", conf, validating)
        assert "collector.internal" not in str(info.value)
    monkeypatch.setenv("LOG_URI", "http://collector.internal:99999/x")
    with pytest.raises(CompileError, match="invalid port"):
        validated(HttpLogger.Config, "http-logger", conf, True)
    monkeypatch.delenv("LOG_URI")
    validated(HttpLogger.Config, "http-logger", conf, True)
    with pytest.raises(CompileError, match="not set"):
        validated(HttpLogger.Config, "http-logger", conf, False)
