"""Applying the Alembic migrations to a database.

They live in ``migrations/`` at the repository root (``alembic.ini`` points there, for the
``alembic`` command) and ship inside the package as ``llmgate/migrations`` (a link to it in the
source tree, package data in a wheel), which is where ``llmgate migrate`` reads them.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema (idempotent). Blocking; not inside a loop."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_async(database_url: str) -> None:
    """``upgrade`` from inside a running event loop (Alembic's env.py runs its own loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(database_url)
        except BaseException as exc:  # re-raised in the caller's task
            errors.append(exc)

    thread = threading.Thread(target=run, name="llmgate-migrate")
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    if errors:
        raise errors[0]
