"""The seed blog's configuration, dumped with ``llmgate config dump`` and applied to an empty
database (SQLite and PostgreSQL) with ``llmgate config apply``, gives identical admin GETs
(less times and indexes) and serves the blog's requests the same."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e import seed_blog as blog
from tests.e2e.test_seed_blog import admin as run_admin_command
from tests.e2e.test_seed_blog import curl
from tests.net import LiveGateway
from tests.processes import LLMGATE
from tests.support import POSTGRES_URL

VOLATILE = {"create_time", "update_time", "createdIndex", "modifiedIndex"}


def run_llmgate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    return subprocess.run(
        [*LLMGATE, *args], capture_output=True, text=True, timeout=120, env=env, input=stdin
    )


def stable(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: stable(v) for k, v in node.items() if k not in VOLATILE}
    if isinstance(node, (list, tuple)):
        return [stable(v) for v in node]
    return node


def every_get(gw: LiveGateway) -> dict[str, Any]:
    """Every admin GET of every resource: lists and single items."""
    answers: dict[str, Any] = {}
    for kind in ("routes", "upstreams", "plugin_configs", "consumers"):
        status, listing = gw.admin("GET", kind)
        assert status == 200
        answers[kind] = listing
        for entry in listing["list"]:
            path = entry["key"].removeprefix("/apisix/")
            answers[path] = gw.admin("GET", path)
            if kind == "consumers":
                credentials = f"{path}/credentials"
                answers[credentials] = gw.admin("GET", credentials)
                for credential in answers[credentials][1]["list"]:
                    one = credential["key"].removeprefix("/apisix/")
                    answers[one] = gw.admin("GET", one)
    return answers


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A brand-new PostgreSQL database, without even the schema; dropped afterwards."""
    import asyncio

    name = f"llmgate_config_{uuid.uuid4().hex[:12]}"
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_seed_blog_dump_applied_to_an_empty_database(
    tmp_path: Path, target: str, request: pytest.FixtureRequest
) -> None:
    source_db = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    with LiveGateway(tmp_path, database_url=source_db) as source:
        for command, _status in blog.ADMIN_COMMANDS:
            run_admin_command(command, source.admin_port, source.fake_port)
        # Beyond the blog: a credential, and a secret kept as an environment reference.
        source.put(
            "consumers/consumer1/credentials/key-1", {"plugins": {"key-auth": {"key": "k-1"}}}
        )
        source.put(
            "consumers/env-user",
            {"username": "env-user", "plugins": {"key-auth": {"key": "$env://ENV_USER_KEY"}}},
        )
        dump = tmp_path / "apisix.yaml"
        result = run_llmgate("config", "dump", "-o", str(dump), "--database-url", source_db)
        assert result.returncode == 0, result.stderr
        text = dump.read_text()
        assert text.endswith("#END\n")
        assert "password1" not in text and "k-1" not in text  # hashes and digests only
        assert "$pbkdf2-sha256$" in text and "$env://ENV_USER_KEY" in text
        before = every_get(source)
        fake_port = source.fake_port

        target_db = (
            f"sqlite+aiosqlite:///{tmp_path / 'new' / 'target.db'}"
            if target == "sqlite"
            else request.getfixturevalue("empty_postgres")
        )
        if target == "sqlite":
            (tmp_path / "new").mkdir()
        result = run_llmgate("config", "apply", "-f", str(dump), "--database-url", target_db)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "applied 6 changes as revision 1"
        # Applying it again changes nothing; diff agrees.
        again = run_llmgate("config", "apply", "-f", str(dump), "--database-url", target_db)
        assert again.stdout == "no changes\n"
        assert (
            run_llmgate("config", "diff", "-f", str(dump), "--database-url", target_db).returncode
            == 0
        )

    with LiveGateway(tmp_path, database_url=target_db, fake_port=fake_port) as copy:
        after = every_get(copy)
        assert stable(after) == stable(before)
        assert len(after) == 12  # 4 lists, 5 items, 2 credential lists, 1 credential
        # The copy serves the blog: basic-auth with the carried-over hash, then the cache.
        request_auth = blog.localise_proxy(blog.PRODUCT_REQUEST_WITH_AUTH, copy.proxy_port)
        status, headers, _ = curl(request_auth)
        assert status == 200 and headers["apisix-cache-status"] == "MISS"
        status, _, _ = curl(request_auth.replace("password1", "wrong"))
        assert status == 401


def test_a_dump_after_a_forced_delete_applies_and_serves_the_same(
    tmp_path: Path, empty_postgres: str
) -> None:
    """``DELETE /upstreams/u1?force=true`` leaves route r1 naming it, as APISIX does (the route
    fails at request time): the dump applies to an empty database and serves as a standalone
    file, both answering r1 as the source does."""
    source_db = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    with LiveGateway(tmp_path, database_url=source_db) as source:
        source.put("upstreams/u1", source.upstream())
        source.put("routes/r1", {"uri": "/gone", "upstream_id": "u1"})
        source.put("routes/r2", {"uri": "/kept", "upstream": source.upstream()})
        assert source.get("/gone")[0] == 200
        assert source.admin("DELETE", "upstreams/u1")[0] == 400  # in use
        assert source.admin("DELETE", "upstreams/u1?force=true")[0] == 200
        served = {path: source.get(path)[0] for path in ("/gone", "/kept")}
        assert served == {"/gone": 502, "/kept": 200}
        before = every_get(source)
        fake_port = source.fake_port
        dump = tmp_path / "apisix.yaml"
        result = run_llmgate("config", "dump", "-o", str(dump), "--database-url", source_db)
        assert result.returncode == 0, result.stderr

    warning = (
        "llmgate: warning: routes/r1: upstream_id [u1] names no upstream; kept as written, "
        "it fails at request time until one exists\n"
    )
    applied = run_llmgate("config", "apply", "-f", str(dump), "--database-url", empty_postgres)
    assert (applied.returncode, applied.stderr) == (0, warning)
    assert applied.stdout.splitlines()[-1] == "applied 2 changes as revision 1"
    again = run_llmgate("config", "apply", "-f", str(dump), "--database-url", empty_postgres)
    assert (again.returncode, again.stdout) == (0, "no changes\n")
    with LiveGateway(tmp_path, database_url=empty_postgres, fake_port=fake_port) as copy:
        assert stable(every_get(copy)) == stable(before)
        assert {path: copy.get(path)[0] for path in served} == served

    (tmp_path / "standalone").mkdir()
    with LiveGateway(
        tmp_path / "standalone", "--standalone", str(dump), fake_port=fake_port
    ) as standalone:
        assert stable(every_get(standalone)) == stable(before)
        assert {path: standalone.get(path)[0] for path in served} == served
        assert "routes/r1: upstream_id [u1] names no upstream" in standalone.log()
