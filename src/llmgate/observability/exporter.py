"""The metrics listener (``settings.metrics_listen``): ``/apisix/prometheus/metrics`` for the
whole node, plus ``/healthz`` and ``/readyz``.

Every data-plane process writes its values into its own files in one directory (prometheus
client's multiprocess mode); a scrape reads and adds them up, so ``--workers N`` shows one node:

    llmgate serve: prepare_multiprocess_dir()   a private temporary directory, named by
                   PROMETHEUS_MULTIPROC_DIR before any metric exists; spawned workers inherit it
    every data-plane process: Metrics(...)      values in <dir>/counter_<pid>.db, gauge_...
    the serve process: build_metrics_app(dir)   MultiProcessCollector over <dir>, rendered here
    a worker that died: mark_dead(pid, dir)     its live gauges go; its counters stay counted
    health checkers: upstream_status.py          node health, one small file per process

prometheus_client picks its value class when it is first imported, so this module imports it
only inside functions, and ``prepare_multiprocess_dir`` refuses to go on when it was imported
before the variable was set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llmgate.observability import upstream_status
from llmgate.observability.health import add_health_routes

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from llmgate.observability.health import Readiness

METRICS_PATH = "/apisix/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENV_NAME = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "llmgate-metrics-"  # then the serve process's pid
DIRECTORY_KEY = web.AppKey("metrics_directory", str)


def prepare_multiprocess_dir() -> str:
    """Create the node's private metrics directory and name it in ``PROMETHEUS_MULTIPROC_DIR``
    (for this process and the workers it spawns).  The caller removes it at exit; the ones of
    gateways killed before they could (SIGKILL, the OOM killer) are removed here."""
    remove_orphaned_dirs(tempfile.gettempdir())
    directory = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
    os.environ[ENV_NAME] = directory
    from prometheus_client import values

    if not values.ValueClass._multiprocess:
        raise RuntimeError(
            f"prometheus_client was imported before {ENV_NAME} was set: metrics would stay in "
            "one process"
        )
    return directory


def remove_orphaned_dirs(parent: str) -> None:
    """Remove this user's metrics directories in ``parent`` whose gateway process is gone."""
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            if not entry.name.startswith(DIR_PREFIX):
                continue
            owner = entry.name[len(DIR_PREFIX) :].partition("-")[0]
            if not owner.isdigit() or _alive(int(owner)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.getuid():
                    shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def mark_dead(pid: int, directory: str) -> None:
    """Forget the live gauges (connections, active LLM calls) of a process that exited."""
    from prometheus_client import multiprocess

    # prometheus_client's multiprocess module has no annotations: typed here, as documented.
    mark_process_dead: Callable[[int, str], None] = multiprocess.mark_process_dead
    mark_process_dead(pid, directory)
    upstream_status.forget(pid, directory)


def collect(directory: str) -> list[Metric]:
    """Every metric family of the processes writing into ``directory``, added up."""
    from prometheus_client import multiprocess

    # Unannotated in prometheus_client: typed here, as documented (``collect()`` yields Metric).
    collector: Callable[..., Any] = multiprocess.MultiProcessCollector
    families: list[Metric] = list(collector(None, path=directory).collect())
    return families + upstream_status.collect(directory, _alive)


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition format, with APISIX's names: a counter's samples carry the family's
    name (``apisix_http_status``), not prometheus_client's ``_total`` / ``_created`` ones."""
    from prometheus_client import utils

    float_to_go: Callable[[float], str] = utils.floatToGoString  # unannotated there

    lines: list[str] = []
    for family in sorted(families, key=lambda f: f.name):
        name = family.name
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {family.type}")
        for sample in family.samples:
            sample_name = sample.name
            if sample_name == name + "_created":
                continue
            if family.type == "counter":
                sample_name = name
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            label_text = "{" + labels + "}" if labels else ""
            lines.append(f"{sample_name}{label_text} {float_to_go(sample.value)}")
    lines.append("")
    return "\n".join(lines).encode()


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


async def metrics_handler(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY_KEY]
    # Reading the files is quick but still disk I/O: kept off the event loop.
    body = await asyncio.get_running_loop().run_in_executor(
        None, lambda: render(collect(directory))
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def build_metrics_app(directory: str, readiness: Readiness) -> web.Application:
    """The metrics listener's application over the node's metrics ``directory``."""
    app = web.Application()
    app[DIRECTORY_KEY] = directory
    app.router.add_get(METRICS_PATH, metrics_handler)
    add_health_routes(app, readiness)
    return app
