"""The real APISIX Dashboard against a real ``llmgate serve --ui-dir``, in headless Chromium.

The Dashboard is a third-party client nobody here wrote (``../shared/apisix-dashboard``, a
build of apache/apisix-dashboard): served at ``/ui/`` on the admin listener, it must open every
page of its navigation, their add forms and detail pages with no error page, no page error and
no admin call answering >= 400; and what an operator creates with it (an upstream, a route with
two plugins from its plugin editor, a consumer) must be served by the data plane.

Browser: Debian's ``chromium`` (``tests/e2e/setup_chromium.sh``, run by ``make test``) driven
by Playwright, never a downloaded browser.  Screenshots go to the test's temporary directory,
and also to ``$LLMGATE_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response, expect, sync_playwright

from tests.net import LiveGateway, exchange, request_bytes
from tests.support import ADMIN_KEY

CHROMIUM = Path("/usr/bin/chromium")


def _dashboard_build() -> Path:
    """``shared/apisix-dashboard/dist.tar.gz`` beside the repository (or beside a folder
    holding it, as for a worktree), else the machine's ``/work/shared``, or
    ``$LLMGATE_DASHBOARD_BUILD``."""
    if os.environ.get("LLMGATE_DASHBOARD_BUILD"):
        return Path(os.environ["LLMGATE_DASHBOARD_BUILD"])
    repository = Path(__file__).resolve().parents[2]
    # A clone elsewhere (CI clones main into a directory of its own) finds the machine's copy.
    for folder in (*repository.parents, Path("/work")):
        candidate = folder / "shared" / "apisix-dashboard" / "dist.tar.gz"
        if candidate.is_file():
            return candidate
    return repository.parent / "shared" / "apisix-dashboard" / "dist.tar.gz"


TIMEOUT_MS = 15_000
ERROR_PAGE = "Something went wrong"  # the Dashboard's root error component


@dataclass(frozen=True)
class Screen:
    """One page of the Dashboard: its path under /ui/, the heading it shows, and the
    resources (admin path, body) written through the admin API before it is opened."""

    path: str
    heading: str
    seeds: tuple[tuple[str, dict[str, Any]], ...] = ()


NAVIGATION = [
    Screen("services", "Services"),
    Screen("routes", "Routes"),
    Screen("stream_routes", "Stream Routes"),
    Screen("upstreams", "Upstreams"),
    Screen("consumers", "Consumers"),
    Screen("consumer_groups", "Consumer Groups"),
    Screen("ssls", "SSLs"),
    Screen("global_rules", "Global Rules"),
    # Its page asks for the metadata of every plugin that has some (a 404 says "none"): the
    # test writes them all first (see test_every_page_of_the_navigation_opens).
    Screen("plugin_metadata", "Plugin Metadata"),
    Screen("plugin_configs", "Plugin Configs"),
    Screen("secrets", "Secrets"),
    Screen("protos", "Protos"),
]
ADD_FORMS = [
    Screen("services/add", "Add Service"),
    Screen("routes/add", "Add Route"),
    Screen("stream_routes/add", "Add Stream Route"),
    Screen("upstreams/add", "Add Upstream"),
    Screen("consumers/add", "Add Consumer"),
    Screen("consumer_groups/add", "Add Consumer Group"),
    Screen("ssls/add", "Add SSL"),
    Screen("global_rules/add", "Add Global Rule"),
    Screen("plugin_configs/add", "Add Plugin Config"),
    Screen("secrets/add", "Add Secret"),
    Screen("protos/add", "Add Proto"),
]
UPSTREAM = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
SEED_ROUTE = {
    "name": "seed",
    "uri": "/seed/*",
    "upstream": UPSTREAM,
    "plugins": {"proxy-rewrite": {"uri": "/v1/models"}},
}
CONSUMER = {"username": "seed", "desc": "seeded"}
SERVICE = {"name": "seed", "upstream": UPSTREAM}
SSL_SEED = "ssls/seed"  # its certificate and key are made by the test (openssl)
# Not opened: detail screens of stream_routes, protos and secrets (llmgate lists them empty
# and refuses writes, so there is nothing to show); plugin_metadata has no detail screen (its
# page opens a drawer).
DETAILS = [
    Screen("routes/detail/seed", "Route Detail", (("routes/seed", SEED_ROUTE),)),
    Screen(
        "upstreams/detail/seed",
        "Upstream Detail",
        (("upstreams/seed", {"name": "seed", **UPSTREAM}),),
    ),
    Screen("consumers/detail/seed", "Consumer Detail", (("consumers", CONSUMER),)),
    Screen("consumers/detail/seed/credentials", "Credentials", (("consumers", CONSUMER),)),
    Screen("consumers/detail/seed/credentials/add", "Add Credential", (("consumers", CONSUMER),)),
    Screen(
        "consumers/detail/seed/credentials/detail/c1",
        "Credential Detail",
        (
            ("consumers", CONSUMER),
            ("consumers/seed/credentials/c1", {"plugins": {"key-auth": {"key": "seed-key-1"}}}),
        ),
    ),
    Screen(
        "plugin_configs/detail/seed",
        "Plugin Config Detail",
        (("plugin_configs/seed", {"plugins": {"request-id": {}}}),),
    ),
    Screen("services/detail/seed", "Service Detail", (("services/seed", SERVICE),)),
    Screen("services/detail/seed/routes", "Routes", (("services/seed", SERVICE),)),
    Screen("services/detail/seed/routes/add", "Add Route", (("services/seed", SERVICE),)),
    Screen(
        "services/detail/seed/routes/detail/in-service",
        "Route Detail",
        (
            ("services/seed", SERVICE),
            ("routes/in-service", {"uri": "/in-service", "service_id": "seed"}),
        ),
    ),
    Screen(
        "consumer_groups/detail/seed",
        "Consumer Group Detail",
        (("consumer_groups/seed", {"plugins": {"limit-count": {"count": 5, "time_window": 60}}}),),
    ),
    Screen("ssls/detail/seed", "SSL Detail", ((SSL_SEED, {"snis": ["dashboard.test"]}),)),
    Screen(
        "global_rules/detail/seed",
        "Global Rule Detail",
        (("global_rules/seed", {"plugins": {"request-id": {}}}),),
    ),
]


def _ids(screens: list[Screen]) -> list[Any]:
    return [pytest.param(screen, id=screen.path) for screen in screens]


@dataclass
class Browser:
    """One Chromium page on the Dashboard, recording every admin answer and page error."""

    page: Page
    base: str
    shots: list[Path]
    admin_answers: list[tuple[int, str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    in_flight: int = 0
    last_event: float = 0.0

    def watch(self) -> None:
        def started(request: Any) -> None:
            if "/apisix/admin" in request.url:
                self.in_flight += 1
                self.last_event = time.monotonic()

        def finished(request: Any) -> None:
            if "/apisix/admin" in request.url:
                self.in_flight -= 1
                self.last_event = time.monotonic()

        def answered(response: Response) -> None:
            if "/apisix/admin" in response.url:
                self.admin_answers.append((response.status, response.request.method, response.url))

        self.page.on("request", started)
        self.page.on("requestfinished", finished)
        self.page.on("requestfailed", finished)
        self.page.on("response", answered)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def reset(self) -> None:
        self.admin_answers.clear()
        self.page_errors.clear()

    def settle(self, quiet: float = 0.25) -> None:
        """Until no admin call has been in flight for ``quiet`` seconds, or one failed (the
        Dashboard retries failed calls for seconds: ``check`` reports it at once)."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            if self.failed():
                return
            if self.in_flight <= 0 and time.monotonic() - self.last_event >= quiet:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError(f"admin calls still in flight: {self.admin_answers[-5:]}")

    def open(self, path: str, heading: str) -> None:
        """Open ``/ui/<path>``, wait for its heading and its admin calls, and check them."""
        self.reset()
        self.page.goto(f"{self.base}/ui/{path}")
        self.expect_screen(heading)
        self.shot(path)
        self.check(path)
        expect(self.page.get_by_role("heading", name=heading, exact=True)).to_be_visible()

    def failed(self) -> list[tuple[int, str, str]]:
        return [answer for answer in self.admin_answers if answer[0] >= 400]

    def expect_screen(self, heading: str) -> None:
        """Wait for the screen's heading and its admin calls; stop early at a failed call or
        the error page (the Dashboard retries a failed call for seconds before it shows an
        error), which ``check`` then reports."""
        wanted = self.page.get_by_role("heading", name=heading, exact=True)
        error = self.page.get_by_text(ERROR_PAGE)
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not self.failed() and not self.page_errors:
            if wanted.is_visible() or error.is_visible():
                self.settle()
                return
            assert time.monotonic() < deadline, f"no heading {heading!r} on {self.page.url}"
            self.page.wait_for_timeout(50)

    def check(self, what: str) -> None:
        if self.failed() or self.page_errors or self.page.get_by_text(ERROR_PAGE).count():
            self.shot(f"failed-{what}", always=True)
        assert not self.failed(), f"{what}: admin calls failed: {self.failed()}"
        assert not self.page_errors, f"{what}: page errors: {self.page_errors}"
        assert self.page.get_by_text(ERROR_PAGE).count() == 0, f"{what}: error page"

    def shot(self, name: str, *, always: bool = False) -> None:
        """A screenshot in ``$LLMGATE_SCREENSHOTS``; with ``always``, in the test's temporary
        directory too (the steps of the creating test, and failures)."""
        for directory in self.shots if always else self.shots[1:]:
            self.page.screenshot(path=str(directory / f"{name.replace('/', '_')}.png"))

    def notifications(self) -> list[str]:
        return [t.strip() for t in self.page.get_by_role("alert").all_inner_texts() if t.strip()]

    def toast(self, text: str, before: list[str]) -> None:
        """Wait for the Dashboard's notification ``text``; fail early, with what the admin API
        answered, when an admin call failed or another new notification came (``before``:
        the ones shown before the action, still fading out)."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            shown = [one for one in self.notifications() if one not in before]
            if any(text in one for one in shown):
                return
            if self.failed() or shown or time.monotonic() > deadline:
                self.shot(f"failed-{text}", always=True)
                raise AssertionError(
                    f"no {text!r}: notifications {shown}, admin answers {self.admin_answers}"
                )
            self.page.wait_for_timeout(50)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = _dashboard_build()
    if not archive.is_file():
        pytest.fail(f"the Dashboard build is missing: {archive} (see its README)")
    target = tmp_path_factory.mktemp("dashboard")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "dist"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, dashboard: Path) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    env = {"LLMGATE_SSL_KEY": "dashboard-test-passphrase"}  # ssls keep their keys sealed
    with LiveGateway(workdir, "--ui-dir", str(dashboard), env=env) as live:
        yield live


@pytest.fixture(scope="module")
def browser(gw: LiveGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run tests/e2e/setup_chromium.sh (make test does)")
    shots = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("LLMGATE_SCREENSHOTS"):
        shots.append(Path(os.environ["LLMGATE_SCREENSHOTS"]))
        shots[-1].mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(
                f"localStorage.setItem('settings:adminKey', JSON.stringify('{ADMIN_KEY}'))"
            )
            session = Browser(context.new_page(), gw.gw.admin_url, shots)
            session.watch()
            yield session
        finally:
            chromium.close()


def certificate(workdir: Path, name: str) -> dict[str, str]:
    """A self-signed certificate for ``name``: ``{"cert": PEM, "key": PEM}`` (openssl)."""
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return {"cert": cert.read_text(), "key": key.read_text()}


def visit(browser: Browser, gw: LiveGateway, screen: Screen, workdir: Path) -> None:
    """Write the screen's resources through the admin API, then open and check it."""
    for path, body in screen.seeds:
        if path == SSL_SEED:
            body = {**body, **certificate(workdir, "dashboard.test")}
        status, answer = gw.admin("PUT", path, body)
        assert status in (200, 201), (path, status, answer)
    browser.open(screen.path, screen.heading)


@pytest.mark.parametrize("screen", _ids(NAVIGATION))
def test_every_page_of_the_navigation_opens(
    browser: Browser, gw: LiveGateway, screen: Screen, tmp_path: Path
) -> None:
    if screen.path == "plugin_metadata":
        # The page probes GET plugin_metadata/{name} for every plugin that has metadata, and
        # a 404 means "none" there (as APISIX answers): write them all, so that every probe
        # is a 200 and any 404 left is a failure.
        status, plugins = gw.admin("GET", "plugins?all=true&subsystem=http")
        assert status == 200
        for name, schemas in plugins.items():
            if "metadata_schema" in schemas:
                gw.put(f"plugin_metadata/{name}", {})
    visit(browser, gw, screen, tmp_path)


@pytest.mark.parametrize("screen", _ids(ADD_FORMS))
def test_every_add_form_opens(
    browser: Browser, gw: LiveGateway, screen: Screen, tmp_path: Path
) -> None:
    visit(browser, gw, screen, tmp_path)


@pytest.mark.parametrize("screen", _ids(DETAILS))
def test_every_detail_page_opens(
    browser: Browser, gw: LiveGateway, screen: Screen, tmp_path: Path
) -> None:
    visit(browser, gw, screen, tmp_path)


def fill_editor(browser: Browser, dialog: Any, value: str) -> None:
    """Replace the JSON in the Monaco editor of ``dialog``: select all, then insert the text
    in one input event (typed key by key, Monaco's bracket pairing would corrupt it)."""
    editor = dialog.locator(".monaco-editor").first
    expect(editor).to_be_visible(timeout=TIMEOUT_MS)
    editor.click()
    browser.page.keyboard.press("Control+A")
    browser.page.keyboard.press("Delete")
    browser.page.keyboard.insert_text(value)
    expect(editor.locator(".view-lines")).to_contain_text(value[:12])


def add_plugin(browser: Browser, name: str, config: dict[str, Any]) -> None:
    """Through the plugin editor: Select Plugins, search, Add, write its JSON, Add."""
    page = browser.page
    page.get_by_role("button", name="Select Plugins").click()
    chooser = page.get_by_role("dialog", name="Select Plugins")
    chooser.get_by_placeholder("Search").fill(name)
    chooser.get_by_test_id(f"plugin-{name}").get_by_role("button", name="Add").click()
    editor = page.get_by_role("dialog", name="Add Plugin")
    fill_editor(browser, editor, json.dumps(config))
    editor.get_by_role("button", name="Add").click()
    expect(editor).to_be_hidden()
    expect(page.get_by_test_id(f"plugin-{name}")).to_be_visible()


def submit(browser: Browser, toast: str, detail: str) -> str:
    """Press the form's Add, wait for its success toast and the detail page; the new id."""
    before = browser.notifications()
    browser.page.get_by_role("button", name="Add", exact=True).click()
    browser.toast(toast, before)
    expect(browser.page).to_have_url(re.compile(f"/ui/{detail}/detail/[^/]+$"))
    expect(browser.page.get_by_text("Created At")).to_be_visible(timeout=TIMEOUT_MS)
    browser.settle()
    return browser.page.url.rsplit("/", 1)[1]


def test_an_operator_builds_a_served_route_with_the_dashboard(
    browser: Browser, gw: LiveGateway
) -> None:
    page = browser.page

    # An upstream: the fake LLM upstream, as one node.
    browser.open("upstreams/add", "Add Upstream")
    page.get_by_label("Name", exact=True).fill("dashboard-upstream")
    nodes = page.get_by_role("group", name="Nodes")
    page.get_by_role("button", name="Add a Node").click()
    row = nodes.locator("tr.ant-table-row")
    expect(row).to_have_count(1)
    for index, value in enumerate(("127.0.0.1", str(gw.fake_port), "1")):
        cell = row.first.locator("input").nth(index)
        cell.click()
        cell.fill(value)
    row.first.locator("input").nth(2).blur()
    page.wait_for_timeout(300)
    upstream_id = submit(browser, "Add Upstream Successfully", "upstreams")
    browser.shot("created_upstream", always=True)

    # A route to it with two plugins from the plugin editor: key-auth and response-rewrite.
    browser.open("routes/add", "Add Route")
    page.get_by_label("Name", exact=True).first.fill("dashboard-route")
    page.get_by_label("URI", exact=True).fill("/dashboard/*")
    upstream = page.get_by_role("group", name="Upstream", exact=True)
    upstream.locator('input[name="upstream_id"]').fill(upstream_id)
    add_plugin(browser, "key-auth", {})
    add_plugin(browser, "response-rewrite", {"headers": {"set": {"X-Dashboard": "built"}}})
    browser.shot("route_with_plugins", always=True)
    route_id = submit(browser, "Add Route Successfully", "routes")
    browser.shot("created_route", always=True)
    # ... and edited on its detail page (the Dashboard PUTs the whole route back).
    page.get_by_role("button", name="Edit").click()
    page.get_by_label("Description").first.fill("made in the Dashboard")
    before = browser.notifications()
    page.get_by_role("button", name="Save").click()
    browser.toast("Edit Route Successfully", before)

    # A consumer with a key.
    browser.open("consumers/add", "Add Consumer")
    page.get_by_role("textbox", name="Username").fill("dashboard_user")
    add_plugin(browser, "key-auth", {"key": "dashboard-key-0001"})
    submit(browser, "Add Consumer Successfully", "consumers")
    browser.shot("created_consumer", always=True)
    browser.check("creating through the Dashboard")

    # What the Dashboard wrote is what was meant ...
    status, route = gw.admin("GET", f"routes/{route_id}")
    assert status == 200
    assert route["value"]["upstream_id"] == upstream_id
    assert route["value"]["desc"] == "made in the Dashboard"
    assert set(route["value"]["plugins"]) == {"key-auth", "response-rewrite"}
    # ... and the data plane serves it.
    head = {"apikey": "dashboard-key-0001", "Content-Type": "application/json"}
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    served = exchange(
        gw.proxy_port,
        request_bytes("POST", "/dashboard/v1/chat/completions", head, body.encode()),
    )
    assert served.status == 200, served.body
    assert served.header("X-Dashboard") == "built"
    assert served.json()["usage"]["total_tokens"] > 0
    assert gw.fake_requests()[-1]["path"] == "/dashboard/v1/chat/completions"
    refused = exchange(gw.proxy_port, request_bytes("GET", "/dashboard/v1/models"))
    assert refused.status == 401


def test_another_origin_may_call_the_admin_api_with_the_key_only(
    browser: Browser, gw: LiveGateway
) -> None:
    """Admin CORS in a real browser: from another origin (``localhost`` is not
    ``127.0.0.1``) a call with the key passes the preflight and is read; the same call with
    credentials (cookies) is refused by the browser, as ``*`` is never the caller's origin."""
    browser.open("routes", "Routes")
    other = f"http://localhost:{gw.admin_port}/apisix/admin/routes"
    script = """async ([url, key, credentials]) => {
        try {
            const r = await fetch(url, {headers: {"X-API-KEY": key}, credentials});
            return [r.status, typeof (await r.json()).total];
        } catch (e) { return ["refused", String(e)]; }
    }"""
    assert browser.page.evaluate(script, [other, ADMIN_KEY, "omit"]) == [200, "number"]
    refused = browser.page.evaluate(script, [other, ADMIN_KEY, "include"])
    assert refused[0] == "refused", refused
    assert browser.page.evaluate(script, [other, "wrong-key", "omit"])[0] == 401
    browser.reset()  # the 401 was the point
