import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.http_logger import HttpLogger

VALID = [
    pytest.param({"uri": "http://127.0.0.1:1980/log"}, id="uri"),
    pytest.param({"uri": "https://logs.example.com"}, id="https"),
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
