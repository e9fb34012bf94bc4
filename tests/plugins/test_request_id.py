import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.request_id import RequestId

VALID = [
    pytest.param({}, id="empty"),
    pytest.param({"header_name": "X-Trace-Id", "include_in_response": False}, id="options"),
    pytest.param({"algorithm": "nanoid"}, id="nanoid"),
    pytest.param({"algorithm": "uuidv7"}, id="uuidv7"),
    pytest.param(
        {"algorithm": "range_id", "range_id": {"length": 6, "char_set": "abcdef"}}, id="r"
    ),
    pytest.param({"algorithm": "range_id", "range_id": {}}, id="range-id-defaults"),
]

INVALID = [
    pytest.param({"algorithm": "snowflake"}, "algorithm", id="algorithm"),
    pytest.param({"range_id": {"length": 5}}, "length", id="short-length"),
    pytest.param({"range_id": {"char_set": "abc"}}, "char_set", id="short-char-set"),
    # Generated ids are header values: a CR/LF in one made the response fail to write.
    pytest.param({"range_id": {"char_set": "abc\r\ndef"}}, "char_set", id="crlf-char-set"),
    pytest.param({"range_id": {"char_set": "abc def"}}, "char_set", id="space-char-set"),
    pytest.param({"range_id": {"char_set": "éàüößñ"}}, "char_set", id="non-ascii-char-set"),
    pytest.param({"include_in_response": "no"}, "include_in_response", id="bool-as-string"),
    pytest.param({"header_name": 1}, "header_name", id="int-header"),
    # Names no header line can carry: the upstream answered 400 (empty, "X Y"), "X:Y" reached
    # it as "X" and the client as a broken line, CR/LF made every response fail.
    pytest.param({"header_name": ""}, "header_name", id="empty-header"),
    pytest.param({"header_name": "X Y"}, "header_name", id="space-in-header"),
    pytest.param({"header_name": "X:Y"}, "header_name", id="colon-in-header"),
    pytest.param({"header_name": "X\r\nEvil: 1"}, "header_name", id="crlf-in-header"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    RequestId.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        RequestId.Config.model_validate(conf)


def test_defaults() -> None:
    conf = RequestId.Config.model_validate({})
    assert (conf.header_name, conf.algorithm, conf.include_in_response) == (
        "X-Request-Id",
        "uuid",
        True,
    )
    assert conf.range_id.length == 16
