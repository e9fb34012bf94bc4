import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.proxy_rewrite import HeaderOperations, ProxyRewrite

SEED = {
    "uri": "/v1/completions",
    "host": "api.openai.com",
    "headers": {"Authorization": "Clave de API de OpenAI", "Content-Type": "application/json"},
}

VALID = [
    pytest.param(SEED, id="seed-001"),
    pytest.param({"uri": "/$1?x=$arg_y"}, id="uri-with-vars"),
    pytest.param({"uri": "$env://UPSTREAM_PATH"}, id="uri-env-ref"),
    pytest.param({"host": "127.0.0.1:8080"}, id="host-port"),
    pytest.param({"method": "POST"}, id="method"),
    pytest.param({"regex_uri": ["^/openai/(.*)", "/v1/$1"]}, id="regex-uri"),
    pytest.param({"regex_uri": ["^/a", "/b", "^/c/(.*)", "/d/$1"]}, id="regex-uri-two-pairs"),
    pytest.param({"regex_uri": ["$env://RE", "/x"]}, id="regex-env-ref"),
    pytest.param({"regex_uri": ["^/(a)", "/$$/${1}/$0/\\$1"]}, id="ngx-template-forms"),
    pytest.param({"regex_uri": ["^/(a)", "$env://TO"]}, id="replacement-env-ref"),
    pytest.param({"headers": {"Authorization": "Bearer $env://OPENAI_API_KEY"}}, id="env-header"),
    pytest.param({"headers": {"X-Count": 5}}, id="number-header"),
    pytest.param(
        {"headers": {"set": {"X-A": "1"}, "add": {"X-B": ["1", "2"]}, "remove": ["X-C"]}},
        id="operations",
    ),
    pytest.param({"headers": {"remove": ["Cookie"]}}, id="remove-only"),
    pytest.param({"use_real_request_uri_unsafe": True}, id="unsafe-uri"),
    pytest.param({"_meta": {"priority": 1}}, id="meta-only"),
]

INVALID = [
    pytest.param({}, "at least 1 properties", id="empty"),
    pytest.param({"uri": "v1/completions"}, "uri", id="relative-uri"),
    pytest.param({"uri": ""}, "uri", id="empty-uri"),
    pytest.param({"host": "api openai com"}, "host", id="host-with-spaces"),
    pytest.param({"host": "https://api.openai.com"}, "host", id="host-with-scheme"),
    pytest.param({"method": "FETCH"}, "method", id="method"),
    pytest.param({"regex_uri": ["^/a"]}, "regex_uri", id="one-element"),
    pytest.param(
        {"regex_uri": ["^/a", "/b", "^/c"]},
        "The length of regex_uri should be an even number",
        id="odd-length",
    ),
    pytest.param({"regex_uri": ["^/(a", "/b"]}, "invalid regex_uri(^/(a, /b)", id="bad-regex"),
    # ngx.re.sub refuses these replacement templates (APISIX's check_schema runs it).
    pytest.param(
        {"regex_uri": ["^/(a)", "/$name"]},
        "invalid regex_uri(^/(a), /$name): failed to compile the replacement template: attempt "
        'to use named capturing variable "name"',
        id="named-variable-in-replacement",
    ),
    pytest.param({"regex_uri": ["^/(a)", "/${x}"]}, "named capturing", id="braced-name"),
    pytest.param({"regex_uri": ["^/(a)", "/${1"]}, "closing bracket", id="unclosed-brace"),
    pytest.param({"regex_uri": ["^/(a)", "/${1a}"]}, "closing bracket", id="brace-not-digits"),
    pytest.param({"regex_uri": ["^/(a)", "/a$"]}, "invalid capturing", id="trailing-dollar"),
    pytest.param({"regex_uri": ["^/(a)", "/${}"]}, "invalid capturing", id="empty-braces"),
    pytest.param({"headers": {}}, "headers", id="empty-headers"),
    pytest.param({"headers": {"X-A": True}}, "headers", id="bool-value"),
    pytest.param({"headers": {"X-A": {"b": 1}}}, "headers", id="object-value"),
    pytest.param({"headers": {"X:A": "1"}}, "headers", id="colon-in-name"),
    pytest.param({"headers": {"X-A": "a\r\nb"}}, "headers", id="crlf-in-value"),
    pytest.param({"headers": {"set": {}}}, "set", id="empty-set"),
    pytest.param({"headers": {"set": {"X-A": "1"}, "X-B": "2"}}, "X-B", id="mixed-forms"),
    pytest.param({"headers": {"remove": []}}, "remove", id="empty-remove"),
    pytest.param({"headers": {"add": {"X-A": []}}}, "add", id="empty-value-list"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    ProxyRewrite.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        ProxyRewrite.Config.model_validate(conf)


def test_header_forms() -> None:
    flat = ProxyRewrite.Config.model_validate(SEED)
    assert flat.headers == SEED["headers"]
    ops = ProxyRewrite.Config.model_validate({"headers": {"set": {"X-A": "1"}}})
    assert isinstance(ops.headers, HeaderOperations)
    assert ops.headers.set == {"X-A": "1"}
    # A scalar under "set" is a header called "set", as in APISIX.
    literal = ProxyRewrite.Config.model_validate({"headers": {"set": "1"}})
    assert literal.headers == {"set": "1"}
