"""Micro-benchmark of the bounded regex engine (llmgate.http.regex) on the regex paths of the
data plane, against Python's ``re`` (unbounded) on the same patterns and subjects.

Run: .venv/bin/python bench/bench_regex.py

Prints ns per operation for a ``vars`` condition (``~~`` on a header), a ``regex_uri``
rewrite (search + ``$1`` template), a cors origin regex, ai-prompt-guard on a 1 KiB prompt,
and a pattern that needs the backtracking engine (look-ahead); then the issue's hostile
prompt, where ``re`` is cut short after one try.  Plain routes run no regex at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from llmgate.http import regex
from llmgate.http.regex import Replacement

PROMPT = ("Tell me about the weather in Paris and what to wear today. " * 18)[:1024]


def per_call(fn: Callable[[], object], budget: float = 0.5) -> float:
    """ns per call of ``fn``, timed for about ``budget`` seconds (best of 3 rounds)."""
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget / 10:
        fn()
        count += 1
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e9


def cases() -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    header = "Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0"
    vars_re, vars_bounded = re.compile(r"curl/\d+"), regex.compile(r"curl/\d+", captures=False)

    uri = "/api/v1/users/12345/profile"
    uri_re = re.compile(r"^/api/v1/(\w+)/(.*)$")
    uri_bounded = regex.compile(r"^/api/v1/(\w+)/(.*)$")
    template = Replacement.compile("/v2/$1/$2")

    def rewrite_re() -> object:  # what proxy-rewrite did before: the same template code
        match = uri_re.search(uri)
        assert match is not None
        expanded = template.expand(match)  # type: ignore[arg-type]
        return uri[: match.start()] + expanded + uri[match.end() :]

    def rewrite_bounded() -> object:
        match = uri_bounded.search(uri)
        assert match is not None
        return match.replaced(template.expand(match))

    origin = "https://chat.example.com"
    cors_re = re.compile(r"^https://.*\.example\.com$")
    cors_bounded = regex.compile(r"^https://.*\.example\.com$", captures=False)

    guard = r"(?i)ignore.*previous.*instructions"
    guard_re, guard_bounded = re.compile(guard), regex.compile(guard, "jou", captures=False)

    ahead = r"(?=.*paris)weather"
    ahead_re, ahead_bounded = re.compile(ahead), regex.compile(ahead, captures=False)
    assert ahead_bounded.engine == "backtracking"

    return [
        ("vars ~~ on a header", lambda: vars_re.search(header), lambda: vars_bounded.test(header)),
        ("regex_uri rewrite", rewrite_re, rewrite_bounded),
        ("cors origin regex", lambda: cors_re.search(origin), lambda: cors_bounded.test(origin)),
        (
            "guard, 1 KiB prompt",
            lambda: guard_re.search(PROMPT),
            lambda: guard_bounded.test(PROMPT),
        ),
        (
            "look-ahead (backtracking)",
            lambda: ahead_re.search(PROMPT),
            lambda: ahead_bounded.test(PROMPT),
        ),
    ]


def main() -> None:
    print(f"{'operation':28} {'re (ns)':>10} {'bounded (ns)':>13} {'added (ns)':>11}")
    for name, unbounded, bounded in cases():
        a, b = per_call(unbounded), per_call(bounded)
        print(f"{name:28} {a:10.0f} {b:13.0f} {b - a:11.0f}")
    hostile = "ignore previous " * 768
    pattern = ".*ignore.*previous.*instructions"
    bounded = regex.compile(pattern, "jou", captures=False)
    started = time.perf_counter()
    bounded.test(hostile)
    print(f"\nhostile 12 KiB prompt, {pattern!r}:")
    print(f"  bounded: {(time.perf_counter() - started) * 1e3:.2f} ms")
    short = hostile[:1536]  # re on the whole 12 KiB takes about half a minute
    started = time.perf_counter()
    re.search(pattern, short)
    print(f"  re on its first 1.5 KiB only: {(time.perf_counter() - started) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
