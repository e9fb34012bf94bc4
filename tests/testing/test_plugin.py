"""The pytest plugin, as a user runs it: docs/testing.md's example in a pytest of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmgate.testing import GatewayError, start_gateway
from tests.net import TestCA, peer_subject
from tests.processes import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def example_files() -> dict[str, str]:
    """The example's files: each ```python block that opens with ``# <file name>``."""
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", DOCS.read_text(), re.S)
    return {name: code for name, code in blocks}


def test_the_documented_example_runs_green(pytester: pytest.Pytester) -> None:
    files = example_files()
    assert set(files) == {"conftest.py", "test_gateway.py"}
    for name, code in files.items():
        pytester.makepyfile(**{name.removesuffix(".py"): code})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=5)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_processes_are_stopped_when_a_test_fails(pytester: pytest.Pytester) -> None:
    pids = pytester.path / "pids"
    pytester.makepyfile(
        test_failing=f"""
        def test_fails(llmgate):
            open({str(pids)!r}, "w").write(" ".join(map(str, llmgate.pids)))
            assert llmgate.request("GET", "/nothing").status == 200  # it is 404
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(failed=1)
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 2
    assert not any(alive(pid) for pid in started)


def test_processes_die_with_a_killed_test_run(pytester: pytest.Pytester) -> None:
    """A CI job killed mid-test (timeout, cancel) must not leave gateways holding ports."""
    pids = pytester.path / "pids"
    pytester.makepyfile(
        test_hangs=f"""
        import time

        def test_hangs(llmgate):
            open({str(pids)!r}, "w").write(" ".join(map(str, llmgate.pids)))
            time.sleep(300)
        """
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_hangs.py"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")},
    )
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and pids.read_text()):
            assert time.monotonic() < deadline and run.poll() is None, "the gateway did not start"
            time.sleep(0.1)
        started = [int(pid) for pid in pids.read_text().split()]
        assert all(alive(pid) for pid in started)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in started):
            assert time.monotonic() < deadline, "gateway processes outlived the test run"
            time.sleep(0.05)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_refused_configuration_says_why(tmp_path: Path) -> None:
    config = {"routes": [{"uri": "/x", "plugins": {"no-such-plugin": {}}}]}
    with (
        pytest.raises(GatewayError, match=r"routes/arr_1: unknown plugin \[no-such-plugin\]"),
        start_gateway(config, workdir=tmp_path),
    ):
        pass


@pytest.mark.parametrize("standalone", [False, True])
def test_a_configuration_with_ssls_starts_and_serves_tls(tmp_path: Path, standalone: bool) -> None:
    """ssls in the configuration need no passphrase from the user: a test gateway's store is
    throwaway, so it seals their keys under one of its own (as ``serve --standalone`` does)."""
    ca = TestCA()
    cert, key = ca.issue("a.test")
    port = free_port()
    config = {
        "routes": [{"uri": "/x", "upstream": {"nodes": {"${{LLMGATE_FAKE_UPSTREAM}}": 1}}}],
        "ssls": [{"cert": cert, "key": key, "snis": ["a.test"]}],
    }
    env = {"LLMGATE_PROXY_LISTEN_TLS": f"127.0.0.1:{port}"}
    with start_gateway(config, workdir=tmp_path, standalone=standalone, env=env) as gateway:
        assert gateway.admin.get("ssls")[1]["total"] == 1
        assert peer_subject(port, ca.context(), "a.test")["commonName"] == "a.test"
