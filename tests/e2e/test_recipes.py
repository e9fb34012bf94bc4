"""docs/recipes/*.sh run as written against real `llmgate serve` + `llmgate fake-upstream`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.processes import fake_upstream_process, llmgate_serve

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"


def run_recipe(name: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", str(RECIPES / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seed_blog_recipe(tmp_path: Path) -> None:
    with fake_upstream_process() as fake, llmgate_serve(tmp_path) as gw:
        out = run_recipe(
            "seed-blog.sh",
            {"ADMIN": gw.admin_url, "PROXY": gw.proxy_url, "UPSTREAM": f"127.0.0.1:{fake}"},
        )
    assert '"object":"text_completion"' in out
    assert "Missing authorization in request" in out
    assert "X-RateLimit-Remaining: 0" in out
    assert "Las solicitudes son demasiado frecuentes" in out
    assert "Apisix-Cache-Status: MISS" in out and "Apisix-Cache-Status: HIT" in out


def test_chat_service_recipe(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-recipe"}
    with fake_upstream_process() as fake, llmgate_serve(tmp_path, env=env) as gw:
        out = run_recipe(
            "chat-service.sh",
            {
                "ADMIN": gw.admin_url,
                "PROXY": gw.proxy_url,
                "ENDPOINT": f"http://127.0.0.1:{fake}/v1/chat/completions",
            },
        )
    assert "HTTP/1.1 200" in out
    assert "Access-Control-Allow-Origin: http://localhost:3000" in out
    assert '"chat.completion"' in out
    assert "sk-recipe" not in out
