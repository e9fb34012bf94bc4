"""Log records: text or one JSON object per line on standard error, at the chosen level."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from llmgate.observability.logs import JsonFormatter
from tests.net import LiveGateway


def test_json_formatter_writes_one_object_per_record() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord(
            "llmgate.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["logger"] == "llmgate.x"
    assert entry["message"] == "failed here"
    assert entry["time"].endswith("Z") and entry["pid"] > 0
    assert "ValueError: boom" in entry["exception"]


def run_configured(level: str, fmt: str) -> list[str]:
    code = (
        "import logging\n"
        "from llmgate.observability import logs\n"
        f"logs.configure({level!r}, {fmt!r})\n"
        "logging.getLogger('llmgate.a').debug('llmgate debug')\n"
        "logging.getLogger('llmgate.a').info('llmgate info')\n"
        "logging.getLogger('llmgate.a').warning('llmgate warning')\n"
        "logging.getLogger('aiohttp.access').info('library info')\n"
        "logging.getLogger('aiohttp.server').error('library error')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout == ""
    return result.stderr.splitlines()


def test_levels_apply_to_llmgate_and_libraries_stay_at_warning() -> None:
    lines = run_configured("debug", "text")
    assert [line.split(" ", 2)[2] for line in lines] == [
        "DEBUG llmgate.a: llmgate debug",
        "INFO llmgate.a: llmgate info",
        "WARNING llmgate.a: llmgate warning",
        "ERROR aiohttp.server: library error",
    ]
    assert [json.loads(line)["message"] for line in run_configured("warning", "json")] == [
        "llmgate warning",
        "library error",
    ]
    assert [json.loads(line)["message"] for line in run_configured("error", "json")] == [
        "library error"
    ]


def test_serve_logs_json_lines_at_the_chosen_level(tmp_path: Path) -> None:
    with LiveGateway(tmp_path, "--log-level", "info", "--log-format", "json") as gw:
        gw.put("routes/1", {"uri": "/x", "upstream": gw.upstream()})
        records = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    assert {"level": "info", "logger": "llmgate.runtime"}.items() <= records[-1].items()
    assert any(r["message"] == "configuration revision 1 is live" for r in records)
    with LiveGateway(tmp_path, env={"LLMGATE_LOG_LEVEL": "error"}) as quiet:
        quiet.put("routes/1", {"uri": "/x", "upstream": quiet.upstream()})
        assert "is live" not in quiet.log()


def test_invalid_log_settings_stop_start_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    for flag, message in (
        ("--log-level=loud", "invalid log-level 'loud': expected debug, info, warning or error"),
        ("--log-format=xml", "invalid log-format 'xml': expected text or json"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "llmgate.cli", "serve", flag],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert (result.returncode, result.stderr) == (2, f"llmgate: error: {message}\n")
