"""``llmgate config dump|diff|apply``: what each prints and the exit code it returns.

Exit codes: ``dump`` 0, or 2 when the store cannot be read; ``diff`` 0 (no difference), 1
(differences), 2 (invalid file or store); ``apply`` 0 (applied, or nothing to change), 1 (the
file is invalid or refused, by llmgate's checks or as a value the database cannot hold: nothing
was written), 2 (the store cannot be used).
"""

from __future__ import annotations

import asyncio
import difflib
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from llmgate.config import document, reading, rendering
from llmgate.config.plan import Plan, apply, diff, without_times
from llmgate.store import Item, Store, open_engine
from llmgate.store.data_errors import invalid_value
from llmgate.store.engine import is_sqlite
from llmgate.store.migrate import upgrade
from llmgate.store.ssl_passphrase import use_stored_ssl_passphrase

T = TypeVar("T")


def _error(message: str) -> None:
    print(f"llmgate: error: {message}", file=sys.stderr)


def _with_store(database_url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = Store(open_engine(database_url))
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _store_failure(database_url: str, exc: Exception) -> int:
    reason = getattr(exc, "orig", None) or exc
    _error(f"cannot use the store {database_url}: {reason}")
    return 2


def _missing_store(database_url: str) -> bool:
    """Whether ``database_url`` is a SQLite file that does not exist (said on standard error):
    opening it would create it, and reading commands never create a store."""
    if not is_sqlite(database_url):
        return False
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    if Path(database).exists():
        return False
    _error(f"cannot use the store {database_url}: {database} does not exist")
    return True


def dump(database_url: str, output: str | None, fmt: str | None) -> int:
    """Write every stored resource as a standalone file (``-o``; standard output by default).
    Secrets appear as stored: hashes, digests and ``$env://`` references."""
    if _missing_store(database_url):
        return 2

    async def items(store: Store) -> list[Item]:
        async with store.read() as reader:
            return await reader.all()

    try:
        stored = _with_store(database_url, items)
    except (SQLAlchemyError, OSError) as exc:
        return _store_failure(database_url, exc)
    chosen = fmt or ("json" if output and output.endswith(".json") else "yaml")
    text = rendering.render(stored, "json" if chosen == "json" else "yaml")
    if output is None or output == "-":
        sys.stdout.write(text)
        return 0
    # Written beside the target and renamed over it: a reader (a standalone gateway watching
    # the file) sees the old file or the new one, never half of one.
    target = Path(output)
    temporary: str | None = None
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, target)
    except OSError as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        _error(f"cannot write {output}: {exc.strerror}")
        return 2
    return 0


def _warn_dangling(plan: Plan) -> None:
    for line in plan.dangling:
        print(f"llmgate: warning: {line}", file=sys.stderr)


def _read(path: str) -> document.Document | None:
    try:
        return reading.read(path)
    except document.DocumentError as exc:
        _error(str(exc))
        return None


def show_diff(plan: Plan, path: str) -> str:
    """The plan as unified diffs of each resource's YAML, store first, file second."""
    out: list[str] = []
    for change in plan.changes:
        old = rendering.render_value(without_times(change.old)) if change.old else ""
        new = rendering.render_value(change.new) if change.new else ""
        before = f"store: {change.label}" if change.old else "/dev/null"
        after = f"{path}: {change.label}" if change.new else "/dev/null"
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), before, after
        )
        out.extend(lines)
    for label in plan.kept:
        out.append(f"# only in the store (apply --prune deletes it): {label}\n")
    return "".join(out)


def diff_command(database_url: str, path: str, prune: bool) -> int:
    parsed = _read(path)
    if parsed is None or _missing_store(database_url):
        return 2
    try:
        plan = _with_store(database_url, lambda store: diff(store, parsed, prune))
    except document.DocumentError as exc:
        _error(str(exc))
        return 2
    except (SQLAlchemyError, OSError) as exc:
        return _store_failure(database_url, exc)
    _warn_dangling(plan)
    sys.stdout.write(show_diff(plan, path))
    return 1 if plan.changes else 0


async def _sealing_apply(
    store: Store, parsed: document.Document, prune: bool
) -> tuple[Plan, int | None]:
    """``apply``, with ssls' private keys sealed as ``llmgate serve`` seals them (under
    LLMGATE_SSL_KEY, or the store's generated passphrase)."""
    await use_stored_ssl_passphrase(store)
    return await apply(store, parsed, prune)


def apply_command(database_url: str, path: str, prune: bool) -> int:
    parsed = _read(path)
    if parsed is None:
        return 1
    try:
        upgrade(database_url)  # an empty database gets the schema first
    except Exception as exc:  # any driver error: one clear line
        return _store_failure(database_url, exc)
    try:
        plan, revision = _with_store(
            database_url, lambda store: _sealing_apply(store, parsed, prune)
        )
    except document.DocumentError as exc:
        _error(f"{exc}; nothing was applied")
        return 1
    except (SQLAlchemyError, OSError) as exc:
        reason = invalid_value(exc)  # the file's fault (a value the database refuses)
        if reason is not None:
            _error(f"invalid value: {reason}; nothing was applied")
            return 1
        return _store_failure(database_url, exc)
    _warn_dangling(plan)
    verbs = {"create": "created", "update": "updated", "delete": "deleted"}
    for change in plan.changes:
        print(f"{verbs[change.action]} {change.label}")
    for label in plan.kept:
        print(f"kept {label} (not in {path}; --prune deletes it)")
    if revision is None:
        print("no changes")
    else:
        print(f"applied {len(plan.changes)} changes as revision {revision}")
    return 0
