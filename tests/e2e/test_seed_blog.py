"""The whole seed blog, verbatim, against real `llmgate serve` and `llmgate fake-upstream`."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from tests.e2e import seed_blog as blog
from tests.processes import fake_upstream_process, llmgate_serve


def curl(command: str) -> tuple[int, dict[str, str], str]:
    """Run a curl command (it has -i): status, headers (lower-case names), body."""
    out = subprocess.run(
        ["bash", "-c", command + " -s"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def admin(command: str, admin_port: int, fake_port: int) -> None:
    local = blog.localise(command, admin_port, f"127.0.0.1:{fake_port}")
    out = subprocess.run(
        ["bash", "-c", local + " -s -o /dev/null -w '%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out in ("200", "201"), (command, out)


def fake_requests(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__fake/requests") as resp:
        return json.load(resp)["requests"]


def test_the_seed_blog_end_to_end(tmp_path: Path) -> None:
    with fake_upstream_process() as fake, llmgate_serve(tmp_path) as gw:
        a, p = gw.admin_port, gw.proxy_port
        request = blog.localise_proxy(blog.PRODUCT_REQUEST, p)
        request_auth = blog.localise_proxy(blog.PRODUCT_REQUEST_WITH_AUTH, p)
        for command in (blog.UPSTREAM, blog.PLUGIN_CONFIG, blog.ROUTE):
            admin(command, a, fake)

        # The product description comes back from the (fake) completions endpoint.
        status, headers, body = curl(request)
        assert status == 200, body
        completion = json.loads(body)
        assert completion["object"] == "text_completion"
        assert completion["choices"][0]["text"]
        assert completion["usage"]["total_tokens"] > 0
        seen = fake_requests(fake)[-1]
        assert seen["path"] == "/v1/completions"
        assert seen["method"] == "POST"
        assert seen["headers"]["authorization"] == "Clave de API de OpenAI"
        assert seen["headers"]["content-type"] == "application/json"
        assert seen["headers"]["host"] == "api.openai.com"
        assert seen["body"]["prompt"].startswith("Escribe una breve")

        # basic-auth: a consumer, then the plugin on the plugin_config.
        admin(blog.CONSUMER, a, fake)
        admin(blog.PLUGIN_CONFIG_BASIC_AUTH, a, fake)
        status, headers, body = curl(request)
        assert status == 401
        assert json.loads(body) == {"message": "Missing authorization in request"}
        status, _, body = curl(request_auth)
        assert status == 200, body

        # limit-count: 2 requests per 60 s, then 403 with the blog's message.
        admin(blog.PLUGIN_CONFIG_LIMIT_COUNT, a, fake)
        status, headers, _ = curl(request_auth)
        assert status == 200
        assert headers["x-ratelimit-limit"] == "2"
        assert headers["x-ratelimit-remaining"] == "1"
        status, headers, _ = curl(request_auth)
        assert status == 200
        assert headers["x-ratelimit-remaining"] == "0"
        status, _, body = curl(request_auth)
        assert status == 403
        assert json.loads(body) == {"error_msg": blog.LIMIT_MESSAGE}

        # proxy-cache: MISS, then HIT; a different prompt is a MISS.
        admin(blog.PLUGIN_CONFIG_PROXY_CACHE, a, fake)
        before = len(fake_requests(fake))
        status, headers, first = curl(request_auth)
        assert status == 200 and headers["apisix-cache-status"] == "MISS"
        status, headers, second = curl(request_auth)
        assert status == 200 and headers["apisix-cache-status"] == "HIT"
        assert second == first
        other = request_auth.replace("Apple 13 pro", "Pixel 9")
        status, headers, third = curl(other)
        assert status == 200 and headers["apisix-cache-status"] == "MISS"
        assert third != first
        assert len(fake_requests(fake)) == before + 2
        # hide_cache_headers: no Cache-Control/Expires shown from the cache.
        assert "expires" not in headers
