"""``llmgate serve`` and ``llmgate migrate`` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.processes import (
    LLMGATE,
    fake_upstream_process,
    free_port,
    llmgate_serve,
    stop,
    wait_for_http,
)
from tests.support import POSTGRES_URL


def get(url: str, key: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"X-API-KEY": key})) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_generated_admin_key_is_printed_once_and_kept(tmp_path: Path) -> None:
    """Printed once with where it is kept and how to replace it; ``admin-key rotate`` makes a
    new one (the old one then fails), kept as a digest too."""
    with llmgate_serve(tmp_path, admin_key=None) as gateway:
        lines = [x for x in gateway.output().splitlines() if "generated admin key" in x]
        assert len(lines) == 1
        key = lines[0].split("generated admin key ")[1].split()[0]
        assert len(key) == 32
        assert f"{tmp_path}/llmgate.db" in lines[0] and "llmgate admin-key rotate" in lines[0]
        assert get(f"{gateway.admin_url}/apisix/admin/routes", key) == 200
        assert get(f"{gateway.admin_url}/apisix/admin/routes", "wrong-key") == 401
    # Kept as a digest: the store's files never hold the key itself.
    stored = [p for p in tmp_path.glob("llmgate.db*") if p.is_file()]  # not the usage spool
    assert key.encode() not in b"".join(p.read_bytes() for p in stored)
    with llmgate_serve(tmp_path, admin_key=None) as again:
        assert "generated admin key" not in again.output()
        assert get(f"{again.admin_url}/apisix/admin/routes", key) == 200
    rotated = run_cli(
        "admin-key",
        "rotate",
        env={"LLMGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/llmgate.db"},
    )
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.split("new admin key ")[1].split()[0]
    assert len(new_key) == 32 and new_key != key
    files = b"".join(p.read_bytes() for p in tmp_path.glob("llmgate.db*"))
    assert new_key.encode() not in files
    with llmgate_serve(tmp_path, admin_key=None) as rotated_gateway:
        assert "generated admin key" not in rotated_gateway.output()
        assert get(f"{rotated_gateway.admin_url}/apisix/admin/routes", new_key) == 200
        assert get(f"{rotated_gateway.admin_url}/apisix/admin/routes", key) == 401


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    full_env.update(env or {})
    return subprocess.run(
        [*LLMGATE, *args], capture_output=True, text=True, timeout=30, env=full_env
    )


def test_invalid_settings_stop_start_up_with_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        "--admin-listen",
        "0.0.0.0:9180",
        "--database-url",
        f"sqlite+aiosqlite:///{tmp_path}/x.db",
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "refusing to expose the admin API" in result.stderr
    result = run_cli("serve", env={"LLMGATE_PROXY_LISTEN": "not-an-address"})
    assert result.returncode == 2 and "invalid proxy-listen" in result.stderr


def test_workers_on_an_admin_node_stop_start_up_with_one_line(tmp_path: Path) -> None:
    """``--workers`` sizes the data plane; an admin node runs none, so more than one there is
    refused rather than ignored (from a flag or from the environment alike)."""
    database = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    for args, env in (
        (("--role", "admin", "--workers", "3"), {}),
        (("--role", "admin"), {"LLMGATE_WORKERS": "2"}),
    ):
        admin = f"--admin-listen=127.0.0.1:{free_port()}"  # should the check be missing
        result = run_cli("serve", *args, admin, "--database-url", database, env=env)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("llmgate: error: invalid workers: "), lines
        assert "role admin" in lines[0], lines


def test_a_store_that_cannot_be_opened_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """A database file in a directory that does not exist: one line naming the store and the
    driver's reason (not SQLAlchemy's "Background on this error" link on a second line), for
    ``serve``, ``migrate`` and ``admin-key rotate`` alike."""
    url = f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db"
    for args in (
        (
            "serve",
            f"--admin-listen=127.0.0.1:{free_port()}",
            f"--proxy-listen=127.0.0.1:{free_port()}",
            f"--metrics-listen=127.0.0.1:{free_port()}",
            "--proxy-listen-tls=off",
        ),
        ("migrate",),
        ("admin-key", "rotate"),
    ):
        result = run_cli(*args, env={"LLMGATE_DATABASE_URL": url, "LLMGATE_ADMIN_KEY": "k" * 32})
        assert result.returncode == 1, result
        said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        errors = [line for line in said if "error" in line]
        assert len(errors) == 1, said
        assert "unable to open database file" in errors[0], said
        assert not any("sqlalche.me" in line or "Background" in line for line in said), said


@pytest.mark.parametrize(
    ("flag", "value"), [("--role", "bogus"), ("--workers", "many"), ("--admin-cors", "maybe")]
)
def test_an_invalid_flag_value_stops_start_up_with_one_line(
    tmp_path: Path, flag: str, value: str
) -> None:
    """Every invalid setting is one line naming it, however it is checked (argparse's choices
    printed the whole usage first)."""
    result = run_cli("serve", flag, value, "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llmgate: error: ") and value in lines[0], lines


def test_a_postgresql_store_that_cannot_be_opened_stops_start_up_with_one_line(
    tmp_path: Path,
) -> None:
    """No database of that name on the real PostgreSQL, and no last-good snapshot: one line
    naming the store (without its password) and why, not the driver's multi-line message."""
    url = make_url(POSTGRES_URL).set(database=f"llmgate_missing_{uuid.uuid4().hex[:12]}")
    url = url.set(password="hunter2-secret")
    result = run_cli(
        "serve",
        "--role=proxy",
        "--proxy-listen",
        f"127.0.0.1:{free_port()}",
        "--metrics-listen",
        f"127.0.0.1:{free_port()}",
        "--proxy-listen-tls",
        "off",
        env={
            "LLMGATE_DATABASE_URL": url.render_as_string(hide_password=False),
            "LLMGATE_SNAPSHOT_DIR": str(tmp_path / "snapshots"),
        },
    )
    output = result.stdout + result.stderr  # start-up lines go to standard output
    assert result.returncode == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("llmgate: error: cannot open the store postgresql"), lines
    assert "does not exist" in lines[0], lines
    assert "hunter2-secret" not in output


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    result = run_cli("migrate", "--database-url", url)
    assert result.returncode == 0, result.stderr
    again = run_cli("migrate", env={"LLMGATE_DATABASE_URL": url})
    assert again.returncode == 0
    import sqlite3

    db = sqlite3.connect(tmp_path / "m.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"resources", "revision", "system_settings", "alembic_version"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_serve_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The whole gateway on PostgreSQL: admin writes, the data plane serving them, usage rows."""
    with fake_upstream_process() as fake, llmgate_serve(tmp_path, database_url=postgres_url) as gw:
        key = {"X-API-KEY": "edd1c9f034335f136f87ad84b625c8f1"}

        def put(path: str, body: dict) -> int:
            request = urllib.request.Request(
                f"{gw.admin_url}/apisix/admin/{path}",
                data=json.dumps(body).encode(),
                method="PUT",
                headers=key,
            )
            with urllib.request.urlopen(request) as resp:
                return resp.status

        assert put("upstreams/1", {"nodes": {f"127.0.0.1:{fake}": 1}}) == 201
        assert put("routes/1", {"uri": "/v1/*", "upstream_id": "1"}) == 201
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        request = urllib.request.Request(
            f"{gw.proxy_url}/v1/chat/completions", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request) as resp:
            assert resp.status == 200
            tokens = json.load(resp)["usage"]["total_tokens"]
        # The data plane reports usage to PostgreSQL asynchronously (about every second).
        deadline = time.monotonic() + 10
        while True:
            usage_request = urllib.request.Request(
                f"{gw.admin_url}/apisix/admin/usage", headers=key
            )
            with urllib.request.urlopen(usage_request) as resp:
                total = json.load(resp)["total"]
            if total["requests"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert total["requests"] == 1 and total["total_tokens"] == tokens


def test_serve_with_standard_output_closed(tmp_path: Path) -> None:
    """Started by a supervisor that closed standard output (``>&-``): the lowest free fd, 1,
    must not become a socket or the database (uvloop aborts closing an fd <= 2, and stray
    writes would land in it); the gateway serves, says nothing, and exits cleanly."""
    admin, proxy, metrics = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    env["LLMGATE_ADMIN_KEY"] = "closed-stdout-key"
    args = [
        *LLMGATE,
        "serve",
        f"--database-url=sqlite+aiosqlite:///{tmp_path}/llmgate.db",
        f"--admin-listen=127.0.0.1:{admin}",
        f"--proxy-listen=127.0.0.1:{proxy}",
        f"--metrics-listen=127.0.0.1:{metrics}",
        "--proxy-listen-tls=off",
    ]
    closing = ["sh", "-c", 'exec "$@" >&-', "sh", *args]  # exec: the pid is llmgate's
    proc = subprocess.Popen(closing, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_http(f"http://127.0.0.1:{admin}/readyz", proc=proc)
        wait_for_http(f"http://127.0.0.1:{proxy}/nothing", proc=proc)
        urllib.request.urlopen(f"http://127.0.0.1:{proxy}/", timeout=5).close()
    except urllib.error.HTTPError as err:
        assert err.code == 404  # no route: answered and logged
    finally:
        stop(proc)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    assert "Assertion" not in stderr and "Traceback" not in stderr, stderr


def test_start_up_errors_go_to_standard_error(tmp_path: Path) -> None:
    """Every reason start-up stops is on standard error, as invalid settings are: a busy port
    and a store that cannot be opened as well (they were on standard output)."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        result = run_cli(
            "serve",
            f"--proxy-listen=127.0.0.1:{busy}",
            f"--admin-listen=127.0.0.1:{free_port()}",
            f"--metrics-listen=127.0.0.1:{free_port()}",
            "--proxy-listen-tls=off",
            env={"LLMGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"},
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"llmgate: error: data plane 127.0.0.1:{busy}: ")
    assert result.stderr.count("\n") == 1
    unopenable = run_cli(
        "serve",
        f"--proxy-listen=127.0.0.1:{free_port()}",
        f"--admin-listen=127.0.0.1:{free_port()}",
        f"--metrics-listen=127.0.0.1:{free_port()}",
        "--proxy-listen-tls=off",
        env={"LLMGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db"},
    )
    assert unopenable.returncode == 1 and unopenable.stdout == ""
    assert unopenable.stderr.startswith("llmgate: error: cannot open the store")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--latency-ms", "-1"),
        ("--latency-ms", "nan"),
        ("--stream-delay-ms", "inf"),
        ("--record", "-1"),
        ("--port", "70000"),
        ("--status", "200"),
    ],
)
def test_an_invalid_fake_upstream_knob_stops_it_with_one_line(flag: str, value: str) -> None:
    """``llmgate fake-upstream`` checks its knobs as ``serve`` checks its settings: one line and
    exit 2 (a negative latency started a fake that then slept forever, ``nan`` never answered)."""
    result = run_cli("fake-upstream", "--port", str(free_port()), flag, value)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmgate: error: "), lines
    assert flag in lines[0], lines


def test_a_fake_upstream_that_cannot_listen_says_so_in_one_line() -> None:
    """A busy port or a host that does not resolve: one line naming the address, exit 1 (it
    was a Python traceback)."""
    with fake_upstream_process() as busy:
        for args in (("--port", str(busy)), ("--host", "no-such-host.invalid")):
            result = run_cli("fake-upstream", *args)
            assert result.returncode == 1, result
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("llmgate: error: "), lines
            assert "Traceback" not in result.stderr


def test_a_fake_upstream_says_where_it_listens() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*LLMGATE, "fake-upstream", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert (
            proc.stdout.readline().strip()
            == f"llmgate: fake upstream listening on 127.0.0.1:{port}"
        )
    finally:
        stop(proc)
