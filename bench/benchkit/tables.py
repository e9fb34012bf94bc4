"""The Markdown tables of each mode, from measured rows."""

from __future__ import annotations

import statistics

from benchkit.load import WrkResult
from benchkit.measure import Row
from benchkit.options import Options


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:.1f}"


def signed_ms(value: float | None) -> str:
    return "-" if value is None else ("+" if value >= 0 else "") + ms(value)


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float] | None, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def default_table(options: Options, rows: list[Row], up_text: str) -> str:
    direct = rows[0] if rows and rows[0].ok else None
    nginx = next((r for r in rows if r.target.startswith("nginx") and r.ok and r.c32), None)
    c = options.connections
    lines = [
        f"| target | req/s @{c} | vs nginx | p50 @1 | p99 @1 | added p50 / p99 @1 "
        f"| p50 @{c} | p99 @{c} | SSE TTFB p50 (p90) | TTFB added | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        c32, c1 = row.c32 if row.ok else None, row.c1 if row.ok else None
        ratio = "-"
        if c32 and nginx and nginx.c32 and row is not direct:
            ratio = f"{100 * c32.rps / nginx.c32.rps:.0f}%"
        added = "-"
        if c1 and direct and direct.c1 and row is not direct:
            added = f"{signed_ms(c1.p50 - direct.c1.p50)} / {signed_ms(c1.p99 - direct.c1.p99)}"
        ttfb = "-"
        if row.ttfb:
            ttfb = f"{ms(median(row.ttfb))} ({ms(percentile(row.ttfb, 0.9))})"
        ttfb_added = "-"
        if row.ttfb and direct and direct.ttfb and row is not direct:
            ttfb_added = signed_ms(median(row.ttfb) - median(direct.ttfb))  # type: ignore[operator]
        result = status(row, options)
        lines.append(
            f"| {row.target} | {rate(c32.rps if c32 else None)} | {ratio} "
            f"| {ms(c1.p50 if c1 else None)} | {ms(c1.p99 if c1 else None)} | {added} "
            f"| {ms(c32.p50 if c32 else None)} | {ms(c32.p99 if c32 else None)} "
            f"| {ttfb} | {ttfb_added} | {result} |"
        )
    legend = (
        f"Latencies in ms (wrk, {options.duration} s per run; @1 = 1 connection, @{c} = {c} "
        f'connections).  Load upstream: {up_text}.  "added" is over the direct row, '
        f'"vs nginx" is req/s as a share of the nginx reference\'s.  SSE TTFB: '
        f"{options.sse_requests} streamed requests to `llmgate fake-upstream` "
        f"({options.sse_delay_ms:g} ms between events), time to the first `data:` byte."
    )
    return "\n".join(lines) + "\n\n" + legend


def status(row: Row, options: Options) -> str:
    if not row.ok:
        return f"FAILED: {short(row.error)}"
    if row.other_cpu > options.quiet_threshold:
        return f"ok, noisy (other processes: {row.other_cpu:.0f}% of a core)"
    return "ok"


def short(text: str | None, limit: int = 160) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cpu_table(rows: list[Row], options: Options) -> str:
    c = options.connections
    lines = [
        f"Where the CPU went during the @{c} runs (% of one core; the load CPU {options.load_cpu} "
        f"runs wrk and the upstreams, the SUT CPU {options.sut_cpu} the proxy under test):",
        "",
        f"| target | req/s @{c} | SUT | upstream | wrk | load CPU busy | SUT CPU busy "
        "| other processes | SUT RSS after (MB) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        r = row.c32
        if r is None:
            continue
        rss = f"{row.rss_mb:.0f}" if row.rss_mb else "-"
        sut = f"{r.sut_cpu:.0f}%" if r.sut_cpu else "-"
        lines.append(
            f"| {row.target} | {rate(r.rps)} | {sut} | {r.upstream_cpu:.0f}% | {r.wrk_cpu:.0f}% "
            f"| {r.load_busy:.0f}% | {r.sut_busy:.0f}% | {r.other_cpu:.0f}% | {rss} |"
        )
    return "\n".join(lines)


def capacity_table(rows: list[Row], options: Options) -> str:
    c = options.connections
    lines = [
        "Upstream capacity check: `llmgate fake-upstream` (on the load CPU, with wrk) loaded "
        "directly and through each proxy.  Were it the load runs' upstream, it would cap every "
        "target whose req/s here is close to the direct row's while the load CPU is saturated:",
        "",
        f"| target | req/s @{c} | fake-upstream CPU | proxy CPU | wrk | load CPU busy "
        "| SUT CPU busy | other processes | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        r = row.c32
        if r is None:
            lines.append(f"| {row.target} | - | - | - | - | - | - | - | {status(row, options)} |")
            continue
        proxy = f"{r.sut_cpu:.0f}%" if r.sut_cpu else "-"
        lines.append(
            f"| {row.target} | {rate(r.rps)} | {r.upstream_cpu:.0f}% | {proxy} | {r.wrk_cpu:.0f}% "
            f"| {r.load_busy:.0f}% | {r.sut_busy:.0f}% | {r.other_cpu:.0f}% "
            f"| {status(row, options)} |"
        )
    return "\n".join(lines)


def workers_table(options: Options, rows: list[tuple[int, str, Row]], up_text: str) -> str:
    c = options.connections
    lines = [
        f"| workers | SUT CPUs | req/s @{c} | vs 1 worker | p50 @{c} | p99 @{c} | p50 @1 "
        f"| p99 @1 | CPU @{c}: all / parent | RSS (MB, all processes) | result |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    base: dict[str, float] = {}
    for workers, cpus, row in rows:
        c32, c1 = (row.c32, row.c1) if row.ok else (None, None)
        if workers == 1 and c32:
            base[cpus] = c32.rps
        ratio = f"{c32.rps / base[cpus]:.2f}x" if c32 and cpus in base else "-"
        rss = f"{row.rss_mb:.0f}" if row.rss_mb else "-"
        cpu = f"{c32.sut_cpu:.0f}% / {c32.sut_parent_cpu:.0f}%" if c32 else "-"
        result = status(row, options)
        lines.append(
            f"| {workers} | {cpus} | {rate(c32.rps if c32 else None)} | {ratio} "
            f"| {ms(c32.p50 if c32 else None)} | {ms(c32.p99 if c32 else None)} "
            f"| {ms(c1.p50 if c1 else None)} | {ms(c1.p99 if c1 else None)} | {cpu} | {rss} "
            f"| {result} |"
        )
    legend = (
        f"Latencies in ms (wrk, {options.duration} s per run).  Load upstream: {up_text}; wrk and "
        f"the upstream stay on CPU {options.load_cpu}, so with the SUT on every CPU the workers "
        "share a core with the load generator.  CPU: % of one core used by all of llmgate's "
        "processes / by the parent alone (with 1 worker they are the same process; with more, "
        "the parent runs the admin API and the node's counter service that limit-count uses)."
    )
    return "\n".join(lines) + "\n\n" + legend


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] / 60 for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def soak_table(
    options: Options,
    seconds: int,
    interval: int,
    result: WrkResult,
    samples: list[tuple[float, float]],
    up_text: str,
) -> str:
    first, last = samples[0][1], samples[-1][1]
    half = [p for p in samples if p[0] >= seconds / 2]
    half_first = half[0][1] if half else first
    peak = max(s[1] for s in samples)
    outcome = "ok" if result.ok else f"FAILED: {result.problem()}"
    if result.ok and result.other_cpu > options.quiet_threshold:
        outcome = f"ok, noisy (other processes: {result.other_cpu:.0f}% of a core)"
    lines = [
        "| duration | requests | req/s | p99 (ms) | RSS start | RSS end | RSS max | growth "
        "| growth, 2nd half | slope, 2nd half | result |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        f"| {seconds} s | {result.requests:,} | {rate(result.rps)} | {ms(result.p99)} "
        f"| {first:.1f} MB | {last:.1f} MB | {peak:.1f} MB | {100 * (last - first) / first:+.1f}% "
        f"| {100 * (last - half_first) / half_first:+.1f}% "
        f"| {slope_mb_per_min(half):+.3f} MB/min | {outcome} |",
        "",
        f"RSS of the llmgate process (VmRSS) every {interval} s, MB: "
        + " ".join(f"{mb:.1f}" for _, mb in samples),
        "",
        f"{options.connections} connections, load upstream: {up_text}; start = first sample, "
        "taken when the load starts (after a warm-up run).",
    ]
    return "\n".join(lines)
