"""The report of a run: the machine it ran on, the rendered Markdown, and its section of
docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from benchkit.constants import DOCS, ROOT
from benchkit.logs import log
from benchkit.options import Options


@dataclass
class Report:
    mode: str
    title: str
    sections: list[str] = field(default_factory=list)


def first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        text = (done.stdout or done.stderr).strip()
        return text.splitlines()[0] if text else "?"
    return "?"


def machine(options: Options, busy: dict[int, float]) -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = first_line(
        ["git", "-C", str(ROOT), "--no-optional-locks", "status", "--porcelain", "--", "src"]
    )
    if dirty not in ("?", ""):
        commit += " + uncommitted changes in src/"
    nginx = first_line([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]).replace(
        "nginx version: ", ""
    )
    wrk = first_line(["wrk", "-v"]).split(" Copyright")[0]
    background = ", ".join(f"CPU{cpu} {pct:.0f}%" for cpu, pct in sorted(busy.items()))
    retry = (
        f"a run during which other processes used over {options.quiet_threshold:g}% of a core "
        f"is repeated (up to {options.retries} times)"
        if options.retries
        else "noisy runs are not repeated"
    )
    return (
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {model}, Linux {platform.release()}\n"
        f"- Python {platform.python_version()}, llmgate {version()} at {commit}, {nginx}, {wrk}\n"
        f"- pinning: wrk + upstreams on CPU {options.load_cpu}, "
        f"system under test on CPU {options.sut_cpu} (taskset)\n"
        f"- CPU busy just before the run (other work on the box): {background}; {retry}"
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("llmgate")
    except PackageNotFoundError:
        return "?"


def render(report: Report, options: Options, about: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")  # its end
    parts = [
        f"### {report.title}",
        "",
        f"Run ended {when}; command: `{options.command}`",
        "",
        *about.splitlines(),
        "",
        *("\n\n".join(report.sections).splitlines()),
    ]
    return "\n".join(wrap(line) for line in parts)


def wrap(line: str, width: int = 100) -> str:
    """Prose lines wrapped like the rest of the docs; table rows stay as they are."""
    if len(line) <= width or line.startswith("|"):
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(
        line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


SKELETON = """# Benchmarks

Produced by `make bench` (`bench/run.py`; how it works and what each number means:
`bench/README.md`).  The sections between the `bench:` markers are rewritten by each run.

## Plugin sets

<!-- bench:default:begin -->
<!-- bench:default:end -->

## Workers

<!-- bench:workers:begin -->
<!-- bench:workers:end -->

## Memory soak

<!-- bench:soak:begin -->
<!-- bench:soak:end -->
"""


def write_docs(mode: str, text: str) -> None:
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    current = DOCS.read_text() if DOCS.exists() else SKELETON
    begin, end = f"<!-- bench:{mode}:begin -->", f"<!-- bench:{mode}:end -->"
    if begin not in current or end not in current:
        current = current.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = current.partition(begin)
    _, _, tail = rest.partition(end)
    DOCS.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
    log(f"wrote {DOCS.relative_to(ROOT)} ({mode})")
