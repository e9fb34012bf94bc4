import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.cors import Cors

VALID = [
    pytest.param({}, id="empty"),
    pytest.param({"allow_origins": "**"}, id="force-any"),
    pytest.param({"allow_origins": "null"}, id="null"),
    pytest.param({"allow_origins": "https://a.com,http://b.com:8080"}, id="list"),
    pytest.param(
        {
            "allow_origins": "https://a.com",
            "allow_methods": "GET,POST",
            "allow_headers": "X-A",
            "allow_credential": True,
        },
        id="credentials",
    ),
    pytest.param({"allow_origins_by_regex": [r".*\.test\.com$"]}, id="regex"),
    pytest.param({"allow_origins": "$env://ORIGINS"}, id="env-ref"),
    pytest.param({"max_age": -1, "expose_headers": "X-Request-Id"}, id="max-age"),
    pytest.param({"timing_allow_origins": "https://a.com"}, id="timing"),
]

INVALID = [
    pytest.param({"allow_origins": "a.com"}, "allow_origins", id="no-scheme"),
    pytest.param({"allow_origins": "https://a.com,b.com"}, "allow_origins", id="list-no-scheme"),
    pytest.param({"allow_origins": ""}, "allow_origins", id="empty-origins"),
    pytest.param({"timing_allow_origins": "x"}, "timing_allow_origins", id="timing"),
    # A CR/LF in a value sent as a header made every allowed response fail to write.
    pytest.param({"allow_methods": "GET\r\nX: 1"}, "allow_methods", id="crlf-methods"),
    pytest.param({"allow_headers": "a\nb"}, "allow_headers", id="lf-headers"),
    pytest.param({"expose_headers": "a\x00b"}, "expose_headers", id="nul-expose"),
    pytest.param({"allow_origins": "http://a\r\nb"}, "allow_origins", id="crlf-origin"),
    pytest.param({"timing_allow_origins": "http://a\nb"}, "timing_allow_origins", id="lf-timing"),
    pytest.param(
        {"allow_credential": True},
        "you can not set '*' for other option when 'allow_credential' is true",
        id="credential-with-default-wildcards",
    ),
    pytest.param(
        {
            "allow_credential": True,
            "allow_origins": "https://a.com",
            "allow_methods": "GET",
            "allow_headers": "X",
            "expose_headers": "*",
        },
        "you can not set '*'",
        id="credential-with-expose-wildcard",
    ),
    pytest.param({"allow_origins_by_regex": ["("]}, "invalid regex", id="bad-regex"),
    pytest.param({"timing_allow_origins_by_regex": ["[a"]}, "invalid regex", id="bad-timing-re"),
    pytest.param({"allow_origins_by_regex": []}, "allow_origins_by_regex", id="empty-regexes"),
    pytest.param({"allow_origins_by_regex": ["a", "a"]}, "unique", id="duplicate-regexes"),
    pytest.param({"max_age": "5"}, "max_age", id="max-age-string"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    Cors.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        Cors.Config.model_validate(conf)


def test_defaults() -> None:
    conf = Cors.Config.model_validate({})
    assert (conf.allow_origins, conf.allow_methods, conf.allow_headers) == ("*", "*", "*")
    assert (conf.max_age, conf.allow_credential) == (5, False)
