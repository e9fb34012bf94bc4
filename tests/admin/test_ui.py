"""``llmgate serve --ui-dir DIR``: a static admin UI build at ``/ui/`` on the admin listener, as
APISIX embeds its Dashboard; and nothing outside DIR, however the path is spelt (raw sockets:
clients would normalise these paths before sending them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmgate.errors import SettingsError
from llmgate.settings import load_settings
from tests.net import RawClient, Response, exchange, request_bytes
from tests.processes import Running, llmgate_serve
from tests.support import ADMIN_KEY

SECRET = b"SECRET-OUTSIDE-THE-UI-DIR"
INDEX = b"<!doctype html><title>ui index</title>"
ASSET = b"console.log('asset');"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<base>/ui`` (the build) beside ``<base>/secret.txt`` and ``<base>/private/``, with
    symlinks from the build to both, and one symlink that stays inside."""
    base = tmp_path_factory.mktemp("ui-layout")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "private").mkdir()
    (base / "private" / "secret.txt").write_bytes(SECRET)
    ui = base / "ui"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_bytes(INDEX)
    (ui / "assets" / "app-1234.js").write_bytes(ASSET)
    (ui / "assets" / "style.css").write_bytes(b"body{}")
    (ui / "escape.txt").symlink_to(base / "secret.txt")
    (ui / "linkdir").symlink_to(base / "private")
    (ui / "inside.js").symlink_to(ui / "assets" / "app-1234.js")
    os.mkfifo(ui / "pipe")
    return base


@pytest.fixture(scope="module")
def gateway(layout: Path) -> Iterator[Running]:
    with llmgate_serve(layout, "--ui-dir", str(layout / "ui")) as running:
        yield running


def get(gateway: Running, target: str, headers: dict[str, str] | None = None) -> Response:
    return exchange(gateway.admin_port, request_bytes("GET", target, headers, host="127.0.0.1"))


def test_ui_redirects_to_the_slash_with_a_relative_location(gateway: Running) -> None:
    answer = get(gateway, "/ui")
    assert answer.status == 301
    assert answer.header("Location") == "/ui/"


@pytest.mark.parametrize("target", ["/ui/", "/ui/index.html", "/ui/?x=1"])
def test_index_without_a_key(gateway: Running, target: str) -> None:
    answer = get(gateway, target)
    assert answer.status == 200
    assert answer.body == INDEX
    assert (answer.header("Content-Type") or "").startswith("text/html")
    assert answer.header("Cache-Control") == "no-cache"
    assert answer.header("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("target", ["/ui/assets/app-1234.js", "/ui/inside.js"])
def test_assets_are_served_as_they_are(gateway: Running, target: str) -> None:
    answer = get(gateway, target)
    assert answer.status == 200
    assert answer.body == ASSET
    assert "javascript" in (answer.header("Content-Type") or "")
    assert answer.header("Cache-Control") == "private, max-age=7200"
    css = get(gateway, "/ui/assets/style.css")
    assert css.status == 200 and (css.header("Content-Type") or "").startswith("text/css")


@pytest.mark.parametrize(
    "target", ["/ui/routes", "/ui/routes/detail/1", "/ui/assets", "/ui/nothing.js", "/ui/pipe"]
)
def test_other_paths_are_the_single_page_apps_index(gateway: Running, target: str) -> None:
    """nginx's ``try_files $uri /index.html``: the app's own routes load (a directory or a
    special file is not a file to serve)."""
    answer = get(gateway, target)
    assert answer.status == 200
    assert answer.body == INDEX


def test_nothing_outside_the_directory_is_served(gateway: Running, layout: Path) -> None:
    refused = [
        "/ui/../secret.txt",
        "/ui/./index.html",
        "/ui/%2e%2e/secret.txt",
        "/ui/%2E%2E%2Fsecret.txt",
        "/ui/..%2fsecret.txt",
        "/ui/.%2e/secret.txt",
        "/ui/assets/../../secret.txt",
        "/ui/assets/%2e%2e/%2e%2e/secret.txt",
        "/ui/..%5csecret.txt",
        "/ui/%00",
        "/ui/index.html%00.js",
        "/ui/escape.txt",
        "/ui/linkdir/secret.txt",
        "/ui/linkdir/",
        "/ui/../apisix/admin/routes",
    ]
    for target in refused:
        answer = get(gateway, target)
        assert answer.status == 404, (target, answer.status, answer.body)
        assert answer.json() == {"error_msg": "not found"}
    # An absolute path is a path inside the directory: no such file there, so the index.
    absolute = str(layout / "secret.txt")
    for target in (f"/ui/{absolute}", f"/ui//{absolute}", f"/ui/%2f{absolute[1:]}"):
        answer = get(gateway, target)
        assert answer.status == 200 and answer.body == INDEX, target


def test_the_ui_opens_no_door_to_the_admin_api(gateway: Running) -> None:
    for target in ("/apisix/admin/routes", "/uix", "/ui.html", "/apisix/admin/../../ui/"):
        answer = get(gateway, target)
        assert answer.status in (401, 404), target
        assert answer.status == 401 or INDEX not in answer.body
    with RawClient(gateway.admin_port) as client:
        client.send(
            request_bytes("GET", "/apisix/admin/routes", {"X-API-KEY": ADMIN_KEY}, host="x")
        )
        assert client.read_response().status == 200
        for method in ("POST", "PUT", "DELETE"):  # the UI is read-only: writes need a key
            client.send(request_bytes(method, "/ui/index.html", {"Content-Length": "0"}))
            answer = client.read_response()
            assert answer.status == 401 and INDEX not in answer.body


@pytest.mark.parametrize(
    ("value", "message"),
    [("missing-dir", "not a directory"), ("empty", "no index.html in it")],
)
def test_ui_dir_without_a_build_is_refused(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SettingsError, match=message):
        load_settings({"ui_dir": str(tmp_path / value)}, {})
    (tmp_path / "empty" / "index.html").write_text("x")
    assert load_settings({}, {"LLMGATE_UI_DIR": str(tmp_path / "empty")}).ui_dir == str(
        tmp_path / "empty"
    )
