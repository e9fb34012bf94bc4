"""Bounded regexes with PCRE's semantics: engines, option letters, ``$1`` templates, bounds."""

from __future__ import annotations

import re
import time

import pytest

from llmgate.http import regex
from llmgate.http.regex import (
    BACKTRACK_LIMIT,
    RegexError,
    RegexLimit,
    Replacement,
    regex_error,
    template_error,
)
from llmgate.http.regex_template import TemplateError


@pytest.mark.parametrize(
    ("template", "subject", "pattern", "expected"),
    [
        ("/v2/$2/${1}", "/api/users/42", r"^/api/(\w+)/(\w+)$", "/v2/42/users"),
        ("[$0]", "abc", "b", "a[b]c"),
        ("$$1", "abc", "(b)", "a$1c"),
        ("x$9y", "abc", "(b)", "axyc"),  # a group that does not exist is empty
        ("<$2>", "ac", "(b)?(c)", "a<c>"),
        ("\\$1", "abc", "(b)", "a\\bc"),  # a backslash is text, not an escape
        ("<$1>", "añb", "(ñ)", "a<ñ>b"),  # offsets are characters, not UTF-8 bytes
        ("<$1>", "xaa", r"(a)\1", "x<a>"),  # the backtracking engine
    ],
)
def test_replacement(template: str, subject: str, pattern: str, expected: str) -> None:
    compiled = regex.compile(pattern)
    assert compiled.sub(subject, Replacement.compile(template), 1) == expected
    match = compiled.search(subject)
    assert match is not None
    assert match.replaced(Replacement.compile(template).expand(match)) == expected


@pytest.mark.parametrize(
    ("template", "error"),
    [
        # lua-nginx-module's script compiler: what ngx.re.sub refuses, and its messages.
        ("$name", 'attempt to use named capturing variable "name" (named captures not supported'),
        ("${name}", 'attempt to use named capturing variable "name"'),
        ("/$", 'invalid capturing variable name found in "/$"'),
        ("${", 'invalid capturing variable name found in "${"'),
        ("${}", 'invalid capturing variable name found in "${}"'),
        ("$-", 'invalid capturing variable name found in "$-"'),
        ("${1", 'the closing bracket in "1" variable is missing'),
        ("${1a}", 'the closing bracket in "1" variable is missing'),
    ],
)
def test_replacement_templates_ngx_refuses(template: str, error: str) -> None:
    assert (template_error(template) or "").startswith(error)
    with pytest.raises(TemplateError):
        Replacement.compile(template)


@pytest.mark.parametrize(
    ("template", "parts"),
    [
        ("", ()),
        ("$$", ("$",)),
        ("$$1", ("$1",)),
        ("$12a", (12, "a")),
        ("${01}x", (1, "x")),
        ("a$1$2b", ("a", 1, 2, "b")),
    ],
)
def test_replacement_template_parts(template: str, parts: tuple[str | int, ...]) -> None:
    assert template_error(template) is None
    assert Replacement.compile(template).parts == parts


def test_binary_replacement_and_count() -> None:
    pattern = regex.compile("o", "jo", binary=True)
    replacement = Replacement.compile_binary("0")
    assert pattern.sub(b"foo boo", replacement, 1) == b"f0o boo"
    assert pattern.sub(b"foo boo", replacement, 0) == b"f00 b00"
    assert pattern.sub(b"xyz", replacement) == b"xyz"


@pytest.mark.parametrize(
    ("pattern", "options", "subject", "expected"),
    [
        ("-", "jo", "axb", "axb"),
        ("x*", "jo", "axb", "-a--b-"),  # empty matches, as ngx.re.gsub
        ("x*", "jo", "añb", "-a-ñ-b-"),  # str: one character at a time
    ],
)
def test_sub_empty_matches(pattern: str, options: str, subject: str, expected: str) -> None:
    assert regex.compile(pattern, options).sub(subject, Replacement.compile("-")) == expected


def test_binary_subjects_are_bytes_unless_utf8() -> None:
    dash = Replacement.compile_binary("-")
    subject = "añb".encode()
    assert regex.compile("x*", binary=True).sub(subject, dash) == b"-a-\xc3-\xb1-b-"
    assert regex.compile("x*", "u", binary=True).sub(subject, dash) == "-a-ñ-b-".encode()
    assert regex.compile("a.b", binary=True).test(subject) is False  # "." is one byte
    assert regex.compile("a..b", binary=True).test(subject) is True
    assert regex.compile("a.b", "u", binary=True).test(subject) is True


# PCRE semantics, whichever engine runs the pattern (ngx.re's option letters).
SEMANTICS = [
    # (pattern, options, subject, matches)
    ("ABC", "jo", "xabc", False),
    ("ABC", "ijo", "xabc", True),
    ("(?i)abc", "jo", "ABC", True),
    ("^b", "jo", "a\nb", False),
    ("^b", "m", "a\nb", True),
    ("a.b", "jo", "a\nb", False),
    ("a.b", "s", "a\nb", True),
    ("b", "a", "ab", False),  # anchored at the start
    ("b", "a", "ba", True),
    ("(?=b)b", "a", "ab", False),
    ("(?=b)b", "a", "ba", True),
    ("(?i)(?=a)abc", "a", "ABCx", True),  # a leading inline flag still applies
    ("(?i)(?=a)abc", "a", "xABC", False),
    ("a b", "x", "ab", True),  # extended: spaces are not part of the pattern
    ("(?x) a b # comment", "jo", "ab", True),
    # "$" also matches before a final newline, as PCRE's (RE2's does not by itself).
    ("secret$", "jo", "the secret\n", True),
    ("secret$", "jo", "the secret\nx", False),
    ("t$", "jo", "secret\n", True),
    (r"secret\z", "jo", "secret\n", False),
    (r"secret\Z", "jo", "secret\n", True),  # \Z: end or before a final newline
    (r"secret\Z", "jo", "secret\nx", False),
    (r"\w+", "jo", "é", False),  # \w is ASCII, as PCRE without UCP
    (r"\d", "jo", "٣", False),
    (r"\Qa.b\E", "jo", "a.b", True),
    (r"\Qa.b\E", "jo", "axb", False),
    (r"\x{41}", "jo", "A", True),
    (r"\e", "jo", "\x1b", True),
    (r"\cA", "jo", "\x01", True),
    ("(?#a comment)b", "jo", "b", True),
    (r"(?<y>\d{4})-(?P=y)", "jo", "2024-2024", True),  # back-reference: backtracking
    (r"(?'y'\d)\k<y>", "jo", "11", True),
    (r"(?'y'\d)\k<y>", "jo", "12", False),
    (r"(?<!x)y", "jo", "xy", False),
    (r"(?<!x)y", "jo", "zy", True),
    (r"a++b", "jo", "aab", True),
    (r"(?>a+)b", "jo", "aab", True),
    ("(?i)a|(?i)b", "jo", "B", True),
]


@pytest.mark.parametrize(("pattern", "options", "subject", "matches"), SEMANTICS)
def test_semantics(pattern: str, options: str, subject: str, matches: bool) -> None:
    compiled = regex.compile(pattern, options)
    assert compiled.test(subject) is matches
    assert (compiled.search(subject) is not None) is matches
    assert regex.compile(pattern, options, captures=False).test(subject) is matches


@pytest.mark.parametrize(
    ("pattern", "engine"),
    [
        (r"^/api/(\w+)/(.*)$", "re2"),
        (r"\Qa.b\E|(?#c)x|(?P<n>y)|(?<m>z)|[[:alpha:]]|\p{L}", "re2"),
        (r"(a)\1", "backtracking"),
        (r"(?=a)", "backtracking"),
        (r"a*+", "backtracking"),
        (r"a\Z", "backtracking"),
        (r"(?x) a", "backtracking"),
    ],
)
def test_engine_choice(pattern: str, engine: str) -> None:
    assert regex.compile(pattern).engine == engine


@pytest.mark.parametrize(
    ("pattern", "options", "reason"),
    [
        ("(", "jo", "missing )"),
        ("[a-", "jo", "missing ]"),
        ("x", "jz", 'unsupported regex option "z"'),
        ("a{1001}", "jo", "invalid repetition size"),
        # The skeleton check: nested repetitions behind a look-ahead would cost the backtracking
        # engine seconds and gigabytes to compile.
        ("(?=a)((a{1000}){1000}){1000}", "jo", "invalid repetition size"),
        ("(?R)", "jo", "recursion"),
        ("(a)(?1)", "jo", "recursion"),
        ("(?(1)a|b)", "jo", "conditionals"),
        (r"(a)\g{-1}", "jo", "relative back-references"),
        ("(*FAIL)", "jo", "verbs"),
        ("a|ab", "jd", 'unsupported regex option "d"'),
    ],
)
def test_refused(pattern: str, options: str, reason: str) -> None:
    assert reason in (regex_error(pattern, options) or "")
    with pytest.raises(RegexError, match=re.escape(reason)):
        regex.compile(pattern, options)


def test_linear_refuses_backtracking_patterns() -> None:
    assert regex.compile(r"^(.*.*)*Z", linear=True).engine == "re2"
    with pytest.raises(RegexError, match="backtracking"):
        regex.compile(r"(a)\1", linear=True)


def test_groups() -> None:
    match = regex.compile(r"(a)(b)?(c)").search("xac")
    assert match is not None
    assert (match.group(), match.group(1), match.group(2), match.group(3)) == ("ac", "a", None, "c")
    assert match.group(4) is None
    match = regex.compile(r"(a)(?=c)").search("xac")
    assert match is not None
    assert (match.group(1), match.group(2)) == ("a", None)


def test_lone_surrogates_do_not_break_matching() -> None:
    # aiohttp hands undecodable path bytes over as surrogate escapes.
    assert regex.compile("b$").test("a\udcffb") is True
    match = regex.compile("(.)b").search("a\udcffb")
    assert match is not None
    assert match.group(1) == "\udcff"


# The attacker's side: subjects built to make a backtracking engine take forever.

HOSTILE = "ignore previous " * 768  # 12 KiB, no "instructions": cubic for Python's re


def test_linear_time_on_the_issue_pattern() -> None:
    pattern = regex.compile(".*ignore.*previous.*instructions", "jou", captures=False)
    assert pattern.engine == "re2"
    started = time.perf_counter()
    assert pattern.test(HOSTILE) is False
    assert pattern.test(HOSTILE + "\nignore all previous instructions") is True
    assert time.perf_counter() - started < 1.0  # Python's re: about 35 s


def test_the_backtracking_engine_stops_at_its_limit() -> None:
    pattern = regex.compile(r"(?=a)(a|aa)+b")
    assert pattern.engine == "backtracking"
    for call in (pattern.test, pattern.search):
        started = time.perf_counter()
        with pytest.raises(RegexLimit):
            call("a" * 64)
        assert time.perf_counter() - started < 50 * BACKTRACK_LIMIT
    with pytest.raises(RegexLimit):
        pattern.sub("a" * 64, Replacement.compile("-"))
