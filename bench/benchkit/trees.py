"""The command line the per-request counters share (``bench_instructions.py``,
``bench_syscalls.py``): the source trees to compare, the plugin set, the server's environment."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from benchkit.constants import ROOT


def tree_parser(description: str) -> argparse.ArgumentParser:
    """A parser with ``--src`` (repeatable), ``--set`` and ``--env`` (repeatable)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--src", action="append", help="a src directory (repeatable)")
    parser.add_argument("--set", default="basic", help="a word of the plugin set's label")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    return parser


def trees(args: argparse.Namespace) -> list[str]:
    """The ``--src`` directories, absolute (this checkout's ``src`` when none is given)."""
    return [os.path.abspath(src) for src in args.src or [str(ROOT / "src")]]


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The ``--env NAME=VALUE`` pairs."""
    return dict(item.split("=", 1) for item in args.env)


def require(program: str, package: str, tool: str) -> None:
    """Exit with a hint when ``program`` is not installed."""
    if not shutil.which(program):
        sys.exit(f"{tool}: {program} is missing (apt-get install {package})")
