"""The seed blog's admin curl commands against a real ``llmgate serve`` process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.seed_blog import ADMIN_COMMANDS, localise
from tests.processes import llmgate_serve


def run_curl(command: str) -> tuple[int, dict]:
    # The command as written, plus flags that only shape curl's output.
    out = subprocess.run(
        ["bash", "-c", command + " -s -w '\\n%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    *body_lines, code = out.rstrip("\n").split("\n")
    body = body_lines[-1] if body_lines else ""
    return int(code), json.loads(body)


def test_every_admin_command_of_the_blog(tmp_path: Path) -> None:
    with llmgate_serve(tmp_path) as gateway:
        for command, status in ADMIN_COMMANDS:
            code, body = run_curl(localise(command, gateway.admin_port, "127.0.0.1:1980"))
            assert code == status, (command, body)
            assert set(body) == {"key", "value"}, body
        code, route = run_curl(
            f"curl http://127.0.0.1:{gateway.admin_port}/apisix/admin/routes/1 "
            "-H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1'"
        )
        assert code == 200
        assert route["key"] == "/apisix/routes/1"
        assert route["value"]["plugin_config_id"] == 1
        assert route["value"]["uri"] == "/openai/product/desc"
        assert route["createdIndex"] == 3
        code, config = run_curl(
            f"curl http://127.0.0.1:{gateway.admin_port}/apisix/admin/plugin_configs/1 "
            "-H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1'"
        )
        assert config["modifiedIndex"] == 7
        assert set(config["value"]["plugins"]) == {"proxy-rewrite", "basic-auth", "proxy-cache"}
        code, consumer = run_curl(
            f"curl http://127.0.0.1:{gateway.admin_port}/apisix/admin/consumers/consumer1 "
            "-H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1'"
        )
        assert code == 200
        assert consumer["value"]["plugins"]["basic-auth"]["password"] != "password1"
    assert "password1" not in gateway.output()
