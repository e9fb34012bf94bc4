"""The standalone file's watcher, in process: each version tried once, bad ones logged once."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
import yaml

from llmgate.config.document import DocumentError, UnreadableFile
from llmgate.config.standalone import StandaloneFile, private_store
from llmgate.credentials import SSL_KEY_ENV, is_sealed, unseal
from llmgate.settings import load_settings
from llmgate.store import Store, open_engine
from tests.net import TestCA

GOOD = "upstreams:\n  - id: u1\n    nodes: {'127.0.0.1:1980': 1}\n#END\n"


def settle(path: Path) -> None:
    """Date the file back: the watcher leaves files modified in the last 50 ms alone."""
    past = time.time() - 1
    os.utime(path, (past, past))


async def ids(url: str) -> list[str]:
    store = Store(open_engine(url))
    try:
        async with store.read() as reader:
            return [f"{item.kind}/{item.id}" for item in await reader.all()]
    finally:
        await store.close()


async def values(url: str) -> dict[str, dict[str, object]]:
    store = Store(open_engine(url))
    try:
        async with store.read() as reader:
            return {f"{item.kind}/{item.id}": item.value for item in await reader.all()}
    finally:
        await store.close()


def test_each_version_is_applied_or_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "apisix.yaml"
    path.write_text(GOOD)
    settings = load_settings({"standalone": str(path), "reload_interval": "0.01"}, environ={})
    applied: list[int] = []

    async def edit(source: StandaloneFile) -> None:
        async with source.watching(applied.append):
            path.write_text(GOOD.replace("#END", ""))
            settle(path)
            await asyncio.sleep(0.3)  # about thirty looks
            report = source.report()  # what /readyz shows
            assert (report["state"], report["revision"]) == ("invalid", 1)
            assert report["error"].startswith(f"{path}: missing #END")
            path.unlink()
            await asyncio.sleep(0.1)
            assert source.report()["state"] == "unreadable"
            path.write_text(GOOD.replace("u1", "u2"))
            settle(path)
            for _ in range(300):
                if applied:
                    break
                await asyncio.sleep(0.01)
            report = source.report()
            assert (report["state"], report["revision"], report.get("error")) == ("ok", 2, None)

    # As ``serve`` does: the private store is made before the event loop runs.
    with private_store(settings) as (private, source):
        assert private.database_url != settings.database_url
        assert source.revision == 1
        assert asyncio.run(ids(private.database_url)) == ["upstreams/u1"]
        asyncio.run(edit(source))
        assert applied == [2]
        assert asyncio.run(ids(private.database_url)) == ["upstreams/u2"]  # the file is all
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"{path}: missing #END at the end (it marks the file as complete); keeping the last "
        "good configuration",
        f"cannot read {path}: No such file or directory; keeping the last good configuration",
    ]
    assert not Path(private.database_url.removeprefix("sqlite+aiosqlite:///")).exists()


def test_a_file_that_cannot_be_applied_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "apisix.yaml"
    path.write_text("stream_routes:\n  - id: 1\n#END\n")
    settings = load_settings({"standalone": str(path)}, environ={})
    with (
        pytest.raises(
            DocumentError, match="stream_routes: llmgate does not support stream routes yet"
        ),
        private_store(settings),
    ):
        pass


def test_ssls_in_the_file_need_no_ssl_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """APISIX serves a file's certificates as written; the private store seals their keys under
    a passphrase made for it when LLMGATE_SSL_KEY is unset (the store dies with the process)."""
    monkeypatch.delenv(SSL_KEY_ENV, raising=False)
    cert, key = TestCA().issue("a.test")
    path = tmp_path / "apisix.yaml"
    ssl = {"id": "a", "cert": cert, "key": key, "snis": ["a.test"]}
    path.write_text(yaml.safe_dump({"ssls": [ssl]}) + "#END\n")
    settings = load_settings({"standalone": str(path)}, environ={})
    with private_store(settings) as (private, _):
        stored = asyncio.run(values(private.database_url))["ssls/a"]
        assert is_sealed(stored["key"]) and unseal(stored["key"]) == key
    assert SSL_KEY_ENV not in os.environ


def test_a_file_swapped_for_a_fifo_is_unreadable_not_waited_on(tmp_path: Path) -> None:
    """Attacker: reading a FIFO blocks until a writer comes; the watcher must not hang on it
    (it would apply no later version)."""
    path = tmp_path / "apisix.yaml"
    os.mkfifo(path)
    source = StandaloneFile(str(path), "sqlite+aiosqlite:///unused.db")
    with pytest.raises(UnreadableFile, match="not a regular file"):
        source.load()
    assert source.report()["state"] == "unreadable"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "apisix.yaml",
            "routes:\n  - id: r1\n    uri: /x\n    priority: 2.0\n    upstream: {nodes: "
            "{'127.0.0.1:1980': 1.0}}\n    plugins:\n      limit-count: {count: 5.0, "
            "time_window: 60.0}\n#END\n",
        ),
        (
            "apisix.json",
            '{"routes": [{"id": "r1", "uri": "/x", "priority": 2.0, "upstream": {"nodes": '
            '{"127.0.0.1:1980": 1.0}}, "plugins": {"limit-count": {"count": 5.0, '
            '"time_window": 60.0}}}]}',
        ),
    ],
)
def test_whole_floats_in_the_file_are_integers(tmp_path: Path, name: str, text: str) -> None:
    """As a body sent to the admin API: ``count: 5.0`` is accepted and kept as 5."""
    path = tmp_path / name
    path.write_text(text)
    settings = load_settings({"standalone": str(path)}, environ={})
    with private_store(settings) as (private, _):
        route = asyncio.run(values(private.database_url))["routes/r1"]
    assert route["plugins"] == {"limit-count": {"count": 5, "time_window": 60}}
    assert type(route["priority"]) is int and route["priority"] == 2
    assert route["upstream"]["nodes"] == {"127.0.0.1:1980": 1}  # type: ignore[index]
