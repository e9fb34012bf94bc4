import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.file_logger import FileLogger

VALID = [
    pytest.param({"path": "logs/file.log"}, id="path"),
    pytest.param(
        {"path": "/tmp/a.log", "log_format": {"host": "$host", "client_ip": "$remote_addr"}},
        id="log-format",
    ),
    pytest.param(
        {
            "path": "a.log",
            "include_req_body": True,
            "include_req_body_expr": [["arg_x", "==", "1"]],
            "include_resp_body": True,
            "max_resp_body_bytes": 1024,
        },
        id="bodies",
    ),
    # APISIX's shape: a list of conditions, each a list of rules (any condition may hold)
    pytest.param({"path": "a.log", "match": [[["status", ">=", 500]]]}, id="match"),
]

INVALID = [
    pytest.param({}, "path", id="no-path"),
    pytest.param({"path": 1}, "path", id="int-path"),
    pytest.param({"path": "a", "log_format": ["host"]}, "log_format", id="list-format"),
    pytest.param({"path": "a", "include_req_body_expr": []}, "include_req_body_expr", id="expr"),
    pytest.param({"path": "a", "include_resp_body_expr": ["x"]}, "include_resp_body_expr", id="r"),
    pytest.param({"path": "a", "max_req_body_bytes": 0}, "max_req_body_bytes", id="max-bytes"),
    pytest.param({"path": "a", "match": [[["x", "1"]]] * 21}, "match", id="too-many-matches"),
    # An unwrapped rule, a bad operator: refused when written, never "silently never logs".
    pytest.param({"path": "a", "match": [["status", ">=", 500]]}, "match", id="unwrapped-match"),
    pytest.param({"path": "a", "match": [[["status", "=>", 5]]]}, "match", id="bad-operator"),
    pytest.param(
        {"path": "a", "include_req_body_expr": [["arg_x", "~~", "("]]},
        "include_req_body_expr",
        id="bad-regex",
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    FileLogger.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        FileLogger.Config.model_validate(conf)
