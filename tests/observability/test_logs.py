"""Log records: text or one JSON object per line on standard error, at the chosen level."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmgate.observability.logs import JsonFormatter, Notices
from tests.net import LiveGateway, exchange, request_bytes


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
    """Records and the access log as JSON lines; a quiet gateway, with no access log."""
    with LiveGateway(tmp_path, "--log-level", "info", "--log-format", "json") as gw:
        gw.put("routes/1", {"uri": "/x", "upstream": gw.upstream()})
        records = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
        assert (
            exchange(gw.proxy_port, request_bytes("GET", "/x?key=k3y", {"X": "\x85"})).status == 200
        )
        access = wait_for_line(gw, '"request":"GET /x?key=***')
    logged = [r for r in records if r["logger"] != "llmgate"]
    assert {"level": "info", "logger": "llmgate.runtime"}.items() <= logged[-1].items()
    assert any(r["message"] == "configuration revision 1 is live" for r in records)
    said = [r["message"] for r in records if r["logger"] == "llmgate"]  # start-up lines
    assert said == [
        f"data plane listening on 127.0.0.1:{gw.proxy_port}",
        f"data plane listening for TLS on 127.0.0.1:{gw.gw.tls_port}",
        f"metrics listening on 127.0.0.1:{gw.gw.metrics_port}",
        f"admin API listening on 127.0.0.1:{gw.admin_port}",
    ]
    assert not [line for line in gw.log().splitlines() if line.startswith("llmgate: ")]
    assert {
        "remote_addr": "127.0.0.1",
        "http_host": "gateway.test",
        "status": 200,
        "upstream_addr": gw.fake_address,
        "upstream_status": 200,
        "upstream_uri": "http://gateway.test/x?key=***",
    }.items() <= access.items()
    assert access["time"].endswith("Z") and float(access["request_time"]) >= 0
    env = {"LLMGATE_LOG_LEVEL": "error", "LLMGATE_ACCESS_LOG": "off"}
    with LiveGateway(tmp_path, env=env) as quiet:
        quiet.put("routes/1", {"uri": "/x", "upstream": quiet.upstream()})
        assert exchange(quiet.proxy_port, request_bytes("GET", "/x")).status == 200
        assert exchange(quiet.proxy_port, request_bytes("GET", "/nowhere")).status == 404
        time.sleep(0.2)
        assert "is live" not in quiet.log()
        assert "GET /x" not in quiet.log() and "GET /nowhere" not in quiet.log()


def wait_for_line(gw: LiveGateway, text: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in gw.log().splitlines():
            if text in line:
                found: dict[str, Any] = json.loads(line)
                return found
        time.sleep(0.02)
    raise AssertionError(f"no line with {text!r} in {gw.log()[-2000:]}")


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


def test_notices_say_a_configuration_warning_once_while_it_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notices = Notices()
    logger = logging.getLogger("llmgate.test_notices")

    def compile_with(*problems: str) -> None:
        with notices.compiling():
            logger.info("compiling")  # below warning: always passes
            for problem in problems:
                # Arguments compare by their text: a fresh exception each time is the same one.
                logger.warning("%s: %s", problem, ValueError("bad"))
                logger.warning("%s: %s", problem, ValueError("bad"))

    with caplog.at_level(logging.INFO, logger="llmgate.test_notices"):
        compile_with("a", "b")
        compile_with("a", "b")
        compile_with("a")
        compile_with("a", "b")
        logger.warning("outside a compilation: %s", 1)
        logger.warning("outside a compilation: %s", 1)
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.INFO] == [
        "a: bad",
        "b: bad",
        "b: bad",  # gone, then back
        "outside a compilation: 1",
        "outside a compilation: 1",
    ]
    assert sum(r.getMessage() == "compiling" for r in caplog.records) == 4


def test_notices_in_steps_and_incremental_rounds(caplog: pytest.LogCaptureFixture) -> None:
    """A compilation in steps (requests log between them, unfiltered); an incremental round
    (only changed resources) forgets nothing."""
    notices = Notices()
    logger = logging.getLogger("llmgate.test_notices_steps")
    with caplog.at_level(logging.WARNING, logger="llmgate.test_notices_steps"):
        for _ in range(2):
            with notices.round():
                with notices.step():
                    logger.warning("unset A")
                logger.warning("a request's warning")  # between steps: always logged
                with notices.step():
                    logger.warning("unset B")
        with notices.round(full=False), notices.step():
            logger.warning("unset C")
        with notices.round(full=False), notices.step():
            pass  # A, B and C still hold: nothing forgotten, nothing said again
        with notices.round(), notices.step():
            logger.warning("unset A")
            logger.warning("unset C")
    assert [r.getMessage() for r in caplog.records] == [
        "unset A",
        "a request's warning",
        "unset B",
        "a request's warning",
        "unset C",
    ]
