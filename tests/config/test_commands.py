"""``llmgate config dump|diff|apply`` as an operator runs them: output, exit codes, errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.processes import LLMGATE, free_port

FILE = """\
routes:
  - id: r1
    uri: /hello
    upstream_id: u1
    plugins:
      limit-count: {count: 2, time_window: 60}
upstreams:
  - id: u1
    nodes:
      "127.0.0.1:1980": 1
    type: roundrobin
consumers:
  - username: jack
    plugins:
      basic-auth: {username: jack, password: s3cret}
#END
"""


def run_llmgate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    return subprocess.run(
        [*LLMGATE, *args], capture_output=True, text=True, timeout=120, env=env, input=stdin
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"


def test_apply_then_diff_then_dump(tmp_path: Path, db: str) -> None:
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    diff = run_llmgate("config", "diff", "-f", str(config), "--database-url", db)
    assert diff.returncode == 2 and "cannot use the store" in diff.stderr  # not migrated yet
    applied = run_llmgate("config", "apply", "-f", str(config), "--database-url", db)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "created upstreams/u1",
        "created consumers/jack",
        "created routes/r1",
        "applied 3 changes as revision 1",
    ]
    same = run_llmgate("config", "diff", "-f", str(config), "--database-url", db)
    assert (same.returncode, same.stdout) == (0, "")

    config.write_text(FILE.replace("count: 2", "count: 3").replace("s3cret", "n3w"))
    changed = run_llmgate("config", "diff", "-f", str(config), "--database-url", db)
    assert changed.returncode == 1
    assert "--- store: routes/r1\n+++ " in changed.stdout
    assert "-    count: 2\n+    count: 3\n" in changed.stdout
    assert "consumers/jack" in changed.stdout
    assert "n3w" not in changed.stdout  # a new password shows as its hash

    dumped = run_llmgate("config", "dump", "--database-url", db)
    assert dumped.returncode == 0 and dumped.stdout.endswith("#END\n")
    assert "s3cret" not in dumped.stdout and "$pbkdf2-sha256$" in dumped.stdout
    as_json = run_llmgate("config", "dump", "--format", "json", "--database-url", db)
    assert [r["id"] for r in json.loads(as_json.stdout)["routes"]] == ["r1"]
    out = tmp_path / "out.json"
    assert run_llmgate("config", "dump", "-o", str(out), "--database-url", db).returncode == 0
    assert json.loads(out.read_text())["upstreams"][0]["id"] == "u1"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_the_file_may_also_be_named_without_a_flag(tmp_path: Path, db: str) -> None:
    """``config apply apisix.yaml`` as well as ``-f apisix.yaml`` (and ``dump out.yaml`` as
    ``-o``): nothing in the command's name says which one an operator must type."""
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    applied = run_llmgate("config", "apply", str(config), "--database-url", db)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[-1] == "applied 3 changes as revision 1"
    same = run_llmgate("config", "diff", str(config), "--database-url", db)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    out = tmp_path / "out.yaml"
    dumped = run_llmgate("config", "dump", str(out), "--database-url", db)
    assert (dumped.returncode, dumped.stdout) == (0, "")
    assert out.read_text().endswith("#END\n") and "id: r1" in out.read_text()
    both = run_llmgate("config", "apply", str(config), "-f", str(out), "--database-url", db)
    assert both.returncode == 2
    assert both.stderr.strip() == "llmgate: error: name the file once: apply FILE or apply -f FILE"
    neither = run_llmgate("config", "diff", "--database-url", db)
    assert neither.returncode == 2 and "FILE" in neither.stderr
    assert len(neither.stderr.strip().splitlines()) == 1


def test_apply_from_standard_input_and_prune(db: str) -> None:
    assert (
        run_llmgate("config", "apply", "-f", "-", "--database-url", db, stdin=FILE).returncode == 0
    )
    only_upstream = (
        "upstreams:\n  - id: u1\n    nodes: {'127.0.0.1:1980': 1}\n    type: roundrobin\n#END\n"
    )
    kept = run_llmgate("config", "apply", "-f", "-", "--database-url", db, stdin=only_upstream)
    assert kept.stdout.splitlines() == [
        "kept consumers/jack (not in -; --prune deletes it)",
        "kept routes/r1 (not in -; --prune deletes it)",
        "no changes",
    ]
    diff = run_llmgate(
        "config", "diff", "-f", "-", "--prune", "--database-url", db, stdin=only_upstream
    )
    assert diff.returncode == 1 and "+++ /dev/null" in diff.stdout
    pruned = run_llmgate(
        "config", "apply", "-f", "-", "--prune", "--database-url", db, stdin=only_upstream
    )
    assert pruned.stdout.splitlines() == [
        "deleted consumers/jack",
        "deleted routes/r1",
        "applied 2 changes as revision 2",
    ]


def test_a_whole_float_applies_and_diffs_as_its_integer(tmp_path: Path, db: str) -> None:
    """``count: 5.0`` is the integer 5, as the admin API reads it: apply stores 5, diff of
    the same file (or of ``count: 5``) is empty, in YAML and JSON alike."""
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE.replace("count: 2", "count: 5.0").replace("window: 60", "window: 60.0"))
    applied = run_llmgate("config", "apply", str(config), "--database-url", db)
    assert applied.returncode == 0, applied.stderr
    dumped = run_llmgate("config", "dump", "--format", "json", "--database-url", db)
    [route] = json.loads(dumped.stdout)["routes"]
    assert route["plugins"]["limit-count"] == {"count": 5, "time_window": 60}
    assert '"count": 5,' in dumped.stdout
    same = run_llmgate("config", "diff", str(config), "--database-url", db)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    as_json = tmp_path / "apisix.json"
    as_json.write_text(dumped.stdout.replace('"count": 5,', '"count": 5.0,'))
    same = run_llmgate("config", "diff", str(as_json), "--database-url", db)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    config.write_text(FILE.replace("count: 2", "count: 6.0"))
    changed = run_llmgate("config", "diff", str(config), "--database-url", db)
    assert changed.returncode == 1, changed.stderr
    assert "-    count: 5\n+    count: 6\n" in changed.stdout


def test_an_invalid_file_applies_nothing_and_says_why_in_one_line(tmp_path: Path, db: str) -> None:
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    assert run_llmgate("config", "apply", "-f", str(config), "--database-url", db).returncode == 0
    config.write_text(FILE.replace("count: 2", "count: -1").replace("u1", "u2"))
    result = run_llmgate("config", "apply", "-f", str(config), "--database-url", db)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("llmgate: error: routes/r1: failed to check the configuration")
    assert result.stderr.rstrip().endswith("; nothing was applied")
    assert "u2" not in run_llmgate("config", "dump", "--database-url", db).stdout
    config.write_text(FILE.replace("#END", ""))
    missing_end = run_llmgate("config", "apply", "-f", str(config), "--database-url", db)
    assert missing_end.returncode == 1 and "missing #END" in missing_end.stderr
    nowhere = run_llmgate(
        "config", "apply", "-f", str(tmp_path / "nope.yaml"), "--database-url", db
    )
    assert nowhere.returncode == 1 and "cannot read" in nowhere.stderr


def _narrow_the_ids(url: str, width: int) -> None:
    async def run() -> None:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"ALTER TABLE resources ALTER COLUMN id TYPE varchar({width})")
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_value_the_database_refuses_applies_nothing(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    # The schema keeps every value within the columns' widths; a store narrowed by hand does not.
    url = empty_postgres_url
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    assert run_llmgate("config", "apply", "-f", str(config), "--database-url", url).returncode == 0
    _narrow_the_ids(url, 100)
    config.write_text(
        FILE.replace("username: jack", "username: " + "j" * 101).replace("count: 2", "count: 3")
    )
    result = run_llmgate("config", "apply", "-f", str(config), "--database-url", url)
    assert (result.returncode, result.stderr) == (
        1,
        "llmgate: error: invalid value: value too long for type character varying(100); "
        "nothing was applied\n",
    )
    assert "count: 2" in run_llmgate("config", "dump", "--database-url", url).stdout


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    for args in (("dump",), ("apply", "-f", str(config)), ("diff", "-f", str(config))):
        result = run_llmgate("config", *args, "--database-url", url)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(f"llmgate: error: cannot use the store {url}")
        assert "Traceback" not in result.stderr


def test_version() -> None:
    from importlib.metadata import version

    result = run_llmgate("--version")
    assert (result.returncode, result.stdout) == (0, f"llmgate {version('llmgate')}\n")


def test_dump_and_diff_leave_a_missing_sqlite_store_missing(tmp_path: Path, db: str) -> None:
    """Reading commands never create a store: a mistyped path is an error, not a new empty
    database file that a later ``serve`` would pick up."""
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    for args in (("dump",), ("diff", "-f", str(config))):
        result = run_llmgate("config", *args, "--database-url", db)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr == (
            f"llmgate: error: cannot use the store {db}: {tmp_path / 'store.db'} does not exist\n"
        )
    assert list(tmp_path.iterdir()) == [config]


def test_apply_seals_ssl_keys_with_the_stores_passphrase(tmp_path: Path, db: str) -> None:
    """Without LLMGATE_SSL_KEY, ``config apply`` seals a file's private keys with the store's
    generated passphrase, as ``serve`` does (it used to refuse them)."""
    from tests.net import TestCA

    cert, key = TestCA().issue("apply.test")
    ssl_doc = {"ssls": [{"id": "s1", "cert": cert, "key": key, "snis": ["apply.test"]}]}
    config = tmp_path / "apisix.json"
    config.write_text(json.dumps(ssl_doc))
    applied = run_llmgate("config", "apply", "-f", str(config), "--database-url", db)
    assert applied.returncode == 0, applied.stderr
    dumped = run_llmgate("config", "dump", "--format", "json", "--database-url", db)
    stored = json.loads(dumped.stdout)["ssls"][0]["key"]
    assert stored.startswith("$llmgate-sealed$v1$") and "PRIVATE KEY" not in dumped.stdout


def test_a_dump_that_cannot_be_written_is_one_line(tmp_path: Path, db: str) -> None:
    """A missing directory or one without write access: one line naming the file, exit 2 (a
    missing directory was a traceback from the temporary file beside the target)."""
    config = tmp_path / "apisix.yaml"
    config.write_text(FILE)
    assert run_llmgate("config", "apply", "-f", str(config), "--database-url", db).returncode == 0
    target = tmp_path / "missing" / "dir" / "out.yaml"
    result = run_llmgate("config", "dump", str(target), "--database-url", db)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"llmgate: error: cannot write {target}: No such file or directory\n"
    assert not target.parent.exists()
