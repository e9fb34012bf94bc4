"""``llmgate migrate`` from an installed wheel: the migrations ship inside the package.

The wheel is built from a copy of the source tree (no build isolation: setuptools and wheel come
from the dev venv), installed with ``pip install --no-deps --target`` into a temporary
directory, and run from there with the dev venv's packages as its dependencies; the copy of
``llmgate`` that runs is the wheel's (checked), whose migrations then create the schema of an
empty SQLite file.  About 5 s.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_wheel_install_migrates_an_empty_sqlite_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "migrations", source / "migrations", ignore=ignore)
    shutil.copytree(ROOT / "src", source / "src", symlinks=True, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMGATE_", "PYTHON"))}
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist", "."],
        cwd=source,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (source / "dist").glob("llmgate-*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()
    assert "llmgate/migrations/env.py" in shipped
    assert "llmgate/migrations/versions/0001_initial.py" in shipped
    target = tmp_path / "installed"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(source)  # nothing of the source tree is left to fall back on
    db = tmp_path / "empty.db"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, llmgate, llmgate.cli; print(llmgate.__file__, flush=True);"
            " sys.exit(llmgate.cli.main(sys.argv[1:]))",
            "migrate",
            "--database-url",
            f"sqlite+aiosqlite:///{db}",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(target)},  # before the dev venv's site-packages
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(target / "llmgate")), result.stdout
    assert "is at the newest schema" in result.stdout
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"resources", "revision", "system_settings", "alembic_version"} <= tables
