"""README's "Using it" section and docs/recipes/*.sh, run as written on a fresh directory.

The shell blocks of the section are run in order by one ``bash -euo pipefail`` in a new
directory (which has ``.venv`` and a copy of ``docs/recipes``), against real ``llmgate serve``
and ``llmgate fake-upstream`` processes; the only change is the ports (9180, 9080, 9091 and 8000
are replaced by free ones, in the blocks and the recipes alike).  The rest of README is checked
against the code: every setting's TOML key is listed, every ``serve`` flag too, the TOML example
loads, and ``make run ARGS=…`` passes its flags.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from llmgate.cli import _parser
from llmgate.settings import Settings, load_settings
from tests.processes import fake_upstream_process, free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
RECIPES = ROOT / "docs" / "recipes"
DEFAULT_PORTS = ("9180", "9080", "9091", "8000")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def with_ports(text: str, ports: Mapping[str, int]) -> str:
    return re.sub(r"\b(9180|9080|9091|8000)\b", lambda m: str(ports[m.group(1)]), text)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    env.pop("KEY", None)
    return {**env, **extra}


def test_readme_walkthrough_and_recipes_run_as_written(tmp_path: Path) -> None:
    """First start (the generated key), the admin API, both recipes, a lost key rotated."""
    ports = {default: free_port() for default in DEFAULT_PORTS}
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "docs" / "recipes").mkdir(parents=True)
    for recipe in RECIPES.glob("*.sh"):
        (tmp_path / "docs" / "recipes" / recipe.name).write_text(
            with_ports(recipe.read_text(), ports)
        )
    script = "\n".join(
        with_ports(block, ports) for block in blocks(section(README, "Using it"), "sh")
    )
    # The test's part: stop whatever the walkthrough left running, even when it failed.
    guard = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    listen = {
        "LLMGATE_ADMIN_LISTEN": f"127.0.0.1:{ports['9180']}",
        "LLMGATE_PROXY_LISTEN": f"127.0.0.1:{ports['9080']}",
        "LLMGATE_METRICS_LISTEN": f"127.0.0.1:{ports['9091']}",
        "LLMGATE_PROXY_LISTEN_TLS": f"127.0.0.1:{free_port()}",  # where there is one
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", guard + script],
        cwd=tmp_path,
        env=clean_env(**listen),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out[-3000:]}\n{result.stderr[-3000:]}"
    assert "llmgate: generated admin key" in out and "llmgate admin-key rotate" in out
    # seed-blog.sh
    assert '"object":"text_completion"' in out
    assert "Missing authorization in request" in out
    assert "X-RateLimit-Remaining: 0" in out
    assert "Las solicitudes son demasiado frecuentes" in out
    assert "Apisix-Cache-Status: MISS" in out and "Apisix-Cache-Status: HIT" in out
    # chat-service.sh
    assert "Access-Control-Allow-Origin: http://localhost:3000" in out
    assert '"chat.completion"' in out
    assert "sk-your-key" not in out
    # The rotated key opens the restarted gateway (curl -f: a 401 would have stopped it).
    assert "llmgate: new admin key" in out
    assert out.rstrip().endswith("}") and "Ruta de completado de la API de OpenAI" in out
    log = (tmp_path / "llmgate.log").read_text()
    assert "sk-your-key" not in log and "password1" not in log


def test_recipes_stop_at_the_first_failed_call(tmp_path: Path) -> None:
    """A wrong or missing key stops a recipe at once, not with a misleading later answer."""
    with fake_upstream_process(None, "--status", "401") as port:  # every call: 401
        for recipe in RECIPES.glob("*.sh"):
            admin = f"http://127.0.0.1:{port}"
            env = clean_env(ADMIN=admin, PROXY=admin, KEY="wrong-key")
            run = subprocess.run(
                ["bash", str(recipe)], env=env, capture_output=True, text=True, timeout=30
            )
            assert run.returncode != 0, (recipe.name, run.stdout)
            assert "401" in run.stderr, (recipe.name, run.stderr)
            assert "404" not in run.stdout + run.stderr
            missing = subprocess.run(
                ["bash", str(recipe)], env=clean_env(ADMIN=admin), capture_output=True, text=True
            )
            assert missing.returncode != 0 and "set KEY to the admin key" in missing.stderr


def test_readme_lists_every_setting_and_flag_with_its_toml_key(tmp_path: Path) -> None:
    # Listed as "(TOML `name`)", or by the rule README states (the environment name without
    # LLMGATE_, in lower case) for a row that names only the variable.
    listed = {
        key
        for group in re.findall(r"\(TOML ([^)]*)\)", README)
        for key in re.findall(r"`(\w+)`", group)
    }
    assert "without `LLMGATE_`, in lower case" in README
    for field in fields(Settings):
        assert field.name in listed or f"`LLMGATE_{field.name.upper()}`" in README, field.name
    serve = _parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    for action in serve._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--config"):
                assert f"`{flag}" in README, flag
    (toml,) = blocks(README, "toml")
    config = tmp_path / "llmgate.toml"
    config.write_text(toml)
    loaded = load_settings({"config": str(config)}, environ={})
    assert loaded.access_log is False and loaded.log_format == "json"


def test_make_run_passes_flags() -> None:
    make = shutil.which("make")
    assert make is not None
    dry = subprocess.run(
        [make, "-n", "run", "ARGS=--log-format json"], cwd=ROOT, capture_output=True, text=True
    )
    assert ".venv/bin/llmgate serve --log-format json" in dry.stdout, dry.stdout
