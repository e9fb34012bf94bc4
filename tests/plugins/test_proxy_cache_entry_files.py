"""The disk zone's file work: what a write does when a sweep races it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from llmgate.plugins.proxy_cache.entry_files import temporary_file


def test_a_folder_a_sweep_removes_while_it_is_made_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mkdir(exist_ok=True) finds the folder there, then a sweep removes it (empty) before
    # mkdir checks that it is a folder: FileExistsError.
    real_mkdir = Path.mkdir
    failures = [FileExistsError(17, "File exists")]

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    descriptor, name = temporary_file(tmp_path / "a" / "bc")
    os.close(descriptor)
    assert Path(name).parent == tmp_path / "a" / "bc"
