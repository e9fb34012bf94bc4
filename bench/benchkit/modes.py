"""The three modes (default plugin sets, workers, memory soak), each returning a ``Report``."""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
from pathlib import Path

from benchkit.constants import (
    BASIC_HEADER,
    CHAT_PATH,
    CHAT_RESPONSE,
    REQUEST_BODY,
    SSE_PATH,
)
from benchkit.load import Watch, WrkResult, run_wrk
from benchkit.logs import BenchError, log
from benchkit.measure import Row, capacity_run, measure
from benchkit.options import Options
from benchkit.procs import Proc, request
from benchkit.report import Report
from benchkit.sampling import CpuMeter, quietly, tree_rss_mb
from benchkit.sse import sse_ttfb
from benchkit.tables import capacity_table, cpu_table, default_table, soak_table, workers_table
from benchkit.targets import PLUGIN_SETS, Llmgate, Stack, preflight


def load_upstream(stack: Stack, fake: tuple[Proc, int]) -> tuple[Proc, int, str]:
    if stack.options.upstream == "fake":
        return fake[0], fake[1], "llmgate fake-upstream (351-byte reply)"
    proc, port = stack.start_upstream()
    return proc, port, f"nginx, fixed {len(CHAT_RESPONSE)}-byte chat completion"


def mode_default(options: Options, run_dir: Path) -> Report:
    rows: list[Row] = []
    capacity: list[Row] = []
    with Stack(options, run_dir) as stack:
        fake_proc, fake_port = stack.start_fake()
        up_proc, up_port, up_text = load_upstream(stack, (fake_proc, fake_port))
        fake_watch = Watch(upstream=fake_proc)

        direct = Row("direct (no proxy)")
        check = request(up_port, "POST", CHAT_PATH, REQUEST_BODY)
        if check[0] != 200:
            raise BenchError(f"the upstream answers {check[0]}")
        measure(options, direct, up_port, {}, Watch(upstream=up_proc), None)
        with contextlib.suppress(BenchError, OSError):
            direct.ttfb, other = quietly(
                options,
                "direct SSE",
                lambda: sse_ttfb(fake_port, SSE_PATH, {}, options.sse_requests),
            )
            direct.other_cpu = max(direct.other_cpu, other)
        rows.append(direct)

        if options.upstream == "nginx":
            capacity.append(
                capacity_run(options, "fake-upstream direct", fake_port, {}, fake_watch)
            )

        ref_proc, ref_port = stack.start_reference(up_port, fake_port)
        auth = {"Authorization": BASIC_HEADER}
        reference = Row("nginx reference (basic auth)")
        try:
            preflight(ref_port, CHAT_PATH, auth, False, ref_proc)
            measure(options, reference, ref_port, auth, Watch(ref_proc, up_proc), SSE_PATH)
        except BenchError as exc:
            reference.error = str(exc)
        rows.append(reference)
        if options.upstream == "nginx" and reference.ok:
            watch = Watch(ref_proc, fake_proc)
            name = "nginx reference -> fake-upstream"
            capacity.append(capacity_run(options, name, ref_port, auth, watch))
        stack.stop(ref_proc)

        for plugin_set in PLUGIN_SETS:
            if options.only and not any(word in plugin_set.label for word in options.only):
                continue
            row = Row(f"llmgate: {plugin_set.label}")
            gate: Llmgate | None = None
            try:
                gate = Llmgate(options, run_dir, f"llmgate-{len(rows)}")
                gate.configure(plugin_set, up_port, fake_port)
                headers = plugin_set.headers
                preflight(gate.proxy_port, CHAT_PATH, headers, plugin_set.cache, gate.proc)
                sse = SSE_PATH if plugin_set.sse else None
                measure(options, row, gate.proxy_port, headers, Watch(gate.proc, up_proc), sse)
                if plugin_set.label == "none" and options.upstream == "nginx" and row.ok:
                    watch = Watch(gate.proc, fake_proc)
                    name = "llmgate: none -> fake-upstream"
                    capacity.append(capacity_run(options, name, gate.proxy_port, {}, watch))
            except (BenchError, OSError, http.client.HTTPException) as exc:
                row.error = str(exc)
                log(f"{row.target}: FAILED: {row.error}")
            finally:
                if gate is not None:
                    gate.stop()
            rows.append(row)

    report = Report("default", "Plugin sets, 1 worker")
    report.sections.append(default_table(options, rows, up_text))
    report.sections.append(cpu_table(rows, options))
    if capacity:
        report.sections.append(capacity_table(capacity, options))
    return report


def mode_workers(options: Options, run_dir: Path) -> Report:
    plugin_set = PLUGIN_SETS[1]
    all_cpus = f"0-{(os.cpu_count() or 1) - 1}"
    layouts = [options.sut_cpu]
    if all_cpus != options.sut_cpu and (os.cpu_count() or 1) > 1:
        layouts.append(all_cpus)
    rows: list[tuple[int, str, Row]] = []
    with Stack(options, run_dir) as stack:
        fake_proc, fake_port = stack.start_fake()
        up_proc, up_port, up_text = load_upstream(stack, (fake_proc, fake_port))
        for cpus in layouts:
            for workers in (1, 2):
                row = Row(f"{workers} worker{'s' if workers > 1 else ''}, SUT on CPU {cpus}")
                gate: Llmgate | None = None
                try:
                    name = f"llmgate-w{workers}-{len(rows)}"
                    gate = Llmgate(options, run_dir, name, workers, cpus)
                    gate.configure(plugin_set, up_port, fake_port)
                    preflight(gate.proxy_port, CHAT_PATH, plugin_set.headers, False, gate.proc)
                    watch = Watch(gate.proc, up_proc)
                    measure(options, row, gate.proxy_port, plugin_set.headers, watch, None)
                except (BenchError, OSError, http.client.HTTPException) as exc:
                    row.error = str(exc)
                    log(f"{row.target}: FAILED: {row.error}")
                finally:
                    if gate is not None:
                        gate.stop()
                rows.append((workers, cpus, row))
    report = Report("workers", f"Workers: 1 vs 2, {plugin_set.label}")
    report.sections.append(workers_table(options, rows, up_text))
    report.sections.append(cpu_table([row for _, _, row in rows], options))
    return report


def mode_soak(options: Options, run_dir: Path, seconds: int, interval: int) -> Report:
    plugin_set = PLUGIN_SETS[1]
    samples: list[tuple[float, float]] = []
    with Stack(options, run_dir) as stack:
        fake_proc, fake_port = stack.start_fake()
        up_proc, up_port, up_text = load_upstream(stack, (fake_proc, fake_port))
        gate = Llmgate(options, run_dir, "llmgate-soak")
        try:
            gate.configure(plugin_set, up_port, fake_port)
            preflight(gate.proxy_port, CHAT_PATH, plugin_set.headers, False, gate.proc)
            watch = Watch(gate.proc, up_proc)
            port, headers, c = gate.proxy_port, plugin_set.headers, options.connections
            run_wrk(options, port, CHAT_PATH, c, max(options.warmup, 5), headers, watch)
            log(f"soak: {seconds} s at {options.connections} connections, RSS every {interval} s")
            result_box: list[WrkResult] = []
            error_box: list[BaseException] = []

            def load() -> None:
                try:
                    result_box.append(run_wrk(options, port, CHAT_PATH, c, seconds, headers, watch))
                except BaseException as exc:  # reported below
                    error_box.append(exc)

            thread = threading.Thread(target=load, daemon=True)
            meter = CpuMeter()
            started = time.monotonic()
            thread.start()
            next_sample = started
            while thread.is_alive():
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((now - started, tree_rss_mb(gate.proc.pid)))
                    next_sample += interval
                thread.join(timeout=max(0.0, min(next_sample - time.monotonic(), 1.0)))
            samples.append((time.monotonic() - started, tree_rss_mb(gate.proc.pid)))
            if error_box:
                raise error_box[0]
            result = result_box[0]
            result.other_cpu = meter.other()
            if not gate.proc.alive():
                raise BenchError(f"llmgate exited: {gate.proc.tail()}")
        finally:
            gate.stop()
    report = Report("soak", f"Memory soak, {plugin_set.label}")
    report.sections.append(soak_table(options, seconds, interval, result, samples, up_text))
    return report
