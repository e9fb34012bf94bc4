"""``llmgate serve --standalone FILE``: an APISIX standalone file served with no database,
reloaded live when edited, the last good configuration kept when an edit is broken."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import LiveGateway, http_json
from tests.processes import LLMGATE, free_port

# In the style of APISIX's deployment-modes.md (routes + upstreams + consumers) with the
# basic-auth and limit-count plugins, and the upstream address from the environment as in its
# admin-api.md ("${{HOST_IP}}:${{PORT}}").
APISIX_FILE = """\
routes:
    -
        id: 1
        uri: /v1/chat/completions
        upstream_id: 1
        plugins:
            basic-auth: {}
            limit-count:
                count: 2
                time_window: 60
                key_type: var
                key: consumer_name
upstreams:
    -
        id: 1
        nodes:
            "${{HOST_IP}}:${{PORT}}": 1
        type: roundrobin
consumers:
    -
        username: jack
        plugins:
            basic-auth:
                username: jack
                password: jack-secret
    -
        username: jill
        plugins:
            basic-auth:
                username: jill
                password: jill-secret
#END
"""

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def write_atomically(path: Path, text: str) -> None:
    """As editors and ``kubectl`` do: a new file renamed over the old one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveGateway, Path]]:
    workdir = tmp_path_factory.mktemp("standalone")
    config = workdir / "apisix.yaml"
    config.write_text(APISIX_FILE)
    port = free_port()
    env = {"HOST_IP": "127.0.0.1", "PORT": str(port)}
    with LiveGateway(workdir, "--standalone", str(config), env=env, fake_port=port) as gw:
        yield gw, config


def proxy(gw: LiveGateway, path: str, headers: dict[str, str] | None = None) -> tuple[int, object]:
    return http_json("POST", f"{gw.gw.proxy_url}{path}", CHAT, headers)


def test_apisix_file_is_served(standalone: tuple[LiveGateway, Path]) -> None:
    gw, _ = standalone
    assert "standalone: configuration from" in gw.log()
    assert proxy(gw, "/v1/chat/completions") == (
        401,
        {"message": "Missing authorization in request"},
    )
    assert proxy(gw, "/v1/chat/completions", auth("jack", "wrong"))[0] == 401
    for _ in range(2):
        status, body = proxy(gw, "/v1/chat/completions", auth("jack", "jack-secret"))
        assert status == 200, body
        assert body["object"] == "chat.completion"  # type: ignore[index]
    assert proxy(gw, "/v1/chat/completions", auth("jack", "jack-secret"))[0] == 503  # limit-count
    assert proxy(gw, "/v1/chat/completions", auth("jill", "jill-secret"))[0] == 200
    assert gw.fake_requests()[-1]["path"] == "/v1/chat/completions"


def test_admin_api_reads_and_refuses_writes(standalone: tuple[LiveGateway, Path]) -> None:
    gw, config = standalone
    status, body = gw.admin("GET", "routes/1")
    assert status == 200 and body["value"]["uri"] == "/v1/chat/completions"
    status, body = gw.admin("GET", "consumers/jack")
    assert status == 200
    assert "jack-secret" not in str(body)  # stored hashed, as through the admin API
    message = f"the admin API is read-only in standalone mode: edit {config} instead"
    for method, path, payload in (
        ("PUT", "routes/2", {"uri": "/x", "upstream_id": 1}),
        ("POST", "routes", {"uri": "/x", "upstream_id": 1}),
        ("PATCH", "routes/1", {"uri": "/y"}),
        ("DELETE", "routes/1", None),
        ("DELETE", "upstreams/1?force=true", None),
        ("PUT", "consumers", {"username": "mallory"}),
    ):
        assert gw.admin(method, path, payload) == (405, {"error_msg": message}), (method, path)
    # Still behind the key: without it, 401 rather than a hint about the mode.
    assert gw.admin("PUT", "routes/2", {"uri": "/x"}, key="wrong-key")[0] == 401
    assert gw.admin("GET", "routes/1")[1]["value"]["uri"] == "/v1/chat/completions"


def wait_for(condition, within: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "not live in time"
        time.sleep(0.01)
    return time.monotonic() - started


def test_edits_are_live_within_a_second_and_broken_edits_keep_the_last_good(
    standalone: tuple[LiveGateway, Path],
) -> None:
    gw, config = standalone
    delays = []
    for i in range(3):
        route = f"    -\n        id: extra\n        uri: /edit{i}\n        upstream_id: 1\n"
        write_atomically(config, APISIX_FILE.replace("upstreams:\n", route + "upstreams:\n"))
        delays.append(wait_for(lambda i=i: proxy(gw, f"/edit{i}")[0] == 200, within=1.0))
    # Edited in place (not renamed) works too.
    config.write_text(APISIX_FILE.replace("/v1/chat/completions", "/v1/in-place"))
    delays.append(wait_for(lambda: proxy(gw, "/v1/in-place")[0] == 401, within=1.0))
    assert proxy(gw, "/edit2")[0] == 404  # the file is the whole configuration
    print(f"standalone reload delays (s): {[round(d, 3) for d in delays]}")

    good = config.read_text()
    broken = {
        "no #END": good.replace("#END", ""),
        "invalid YAML": good.replace("routes:", "routes: [", 1),
        "unknown plugin": good.replace("basic-auth: {}", "no-such-plugin: {}"),
        "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"b{n}: &b{n} [{', '.join(['*' + ('a' if n == 0 else f'b{n - 1}')] * 10)}]\n"
            for n in range(7)
        )
        + "routes: []\n#END\n",
    }
    reasons = {
        "no #END": "missing #END at the end",
        "invalid YAML": "invalid YAML at line",
        "unknown plugin": "routes/1: unknown plugin [no-such-plugin]",
        "alias bomb": "the document is too large",
    }
    assert readiness(gw, config) == (200, "ok", None)
    for name, text in broken.items():
        write_atomically(config, text)
        time.sleep(0.6)  # several looks at the file
        assert proxy(gw, "/v1/in-place")[0] == 401, name  # the last good configuration
        assert gw.log().count(reasons[name]) == 1, (name, gw.log())
        # Ready (the last good configuration serves), and /readyz says why the file is not.
        status, state, error = readiness(gw, config)
        assert (status, state) == (200, "invalid") and reasons[name] in error, (name, error)
    assert gw.log().count("keeping the last good configuration") == len(broken)
    config.unlink()
    time.sleep(0.5)
    assert gw.log().count("No such file or directory; keeping the last good configuration") == 1
    assert proxy(gw, "/v1/in-place")[0] == 401
    assert readiness(gw, config) == (
        200,
        "unreadable",
        f"cannot read {config}: No such file or directory",
    )
    write_atomically(config, APISIX_FILE)
    wait_for(lambda: proxy(gw, "/v1/chat/completions")[0] == 401, within=1.0)
    wait_for(lambda: file_state(gw) == "ok", within=1.0)
    assert readiness(gw, config) == (200, "ok", None)


def readiness(gw: LiveGateway, config: Path) -> tuple[int, str, str | None]:
    """/readyz's status and what it says of the file; ``?strict=1`` must agree (call it when
    the file is not being changed)."""
    status, body = http_json("GET", f"{gw.gw.admin_url}/readyz")
    assert body["source"] == "file" and body["file"]["path"] == str(config), body
    state, error = body["file"]["state"], body["file"].get("error")
    strict, strict_body = http_json("GET", f"{gw.gw.admin_url}/readyz?strict=1")
    if state == "ok":
        assert strict == 200, strict_body
    else:
        assert (strict, strict_body["reason"]) == (503, f"configuration file {state}: {error}")
    return status, state, error


def file_state(gw: LiveGateway) -> str:
    return str(http_json("GET", f"{gw.gw.admin_url}/readyz")[1]["file"]["state"])


def test_a_bad_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "apisix.yaml"
    config.write_text("routes:\n  - uri: /x\n    plugins: {no-such-plugin: {}}\n#END\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    result = subprocess.run(
        [
            *LLMGATE,
            "serve",
            "--standalone",
            str(config),
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "llmgate: error: routes/arr_1: unknown plugin [no-such-plugin]"
    missing = subprocess.run(
        [*LLMGATE, "serve", "--standalone", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr and "No such file or directory" in missing.stderr


def test_workers_serve_the_file_and_its_edits(tmp_path: Path) -> None:
    config = tmp_path / "apisix.yaml"
    config.write_text(APISIX_FILE)
    port = free_port()
    env = {"HOST_IP": "127.0.0.1", "PORT": str(port)}
    with LiveGateway(
        tmp_path, "--standalone", str(config), "--workers", "2", env=env, fake_port=port
    ) as gw:
        wait_for(lambda: proxy(gw, "/v1/chat/completions")[0] == 401, within=20)
        write_atomically(config, APISIX_FILE.replace("/v1/chat/completions", "/v2/chat"))

        # Live on every worker within 1 s: new connections in a row (SO_REUSEPORT spreads them
        # over both workers, though ten may all land on one) all see the edit, old path and new.
        def edited() -> bool:
            new = {proxy(gw, "/v2/chat")[0] for _ in range(10)}
            old = {proxy(gw, "/v1/chat/completions")[0] for _ in range(20)}
            return new == {401} and old == {404}

        wait_for(edited, within=1.0)
        assert {proxy(gw, "/v1/chat/completions")[0] for _ in range(20)} == {404}
        # The parent of the workers reports the file as well.
        assert readiness(gw, config) == (200, "ok", None)
        write_atomically(config, "routes: [\n#END\n")
        wait_for(lambda: file_state(gw) == "invalid", within=1.0)
        status, _, error = readiness(gw, config)
        assert status == 200 and error is not None and "invalid YAML" in error
        assert {proxy(gw, "/v2/chat")[0] for _ in range(10)} == {401}
