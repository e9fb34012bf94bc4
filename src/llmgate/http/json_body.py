"""JSON request bodies, read as leniently as the most lenient common upstream reads them.

A check at the gateway that parses a body more strictly than the upstream behind it can be
walked around: orjson refuses a UTF-8 byte order mark, UTF-16 and UTF-32 bodies and ``NaN`` /
``Infinity``, which Python's ``json.loads`` (FastAPI, Flask and most Python servers) accepts,
so a guard that let unparsable bodies through would forward them unchecked.

    parse(raw) -> Parsed(value, body)     NotJson (a ValueError) with the reason

``parse`` reads what ``json.loads`` reads (encoding detected as RFC 4627 says, byte order marks,
non-finite numbers, integers of any size); ``body`` is what to forward: ``raw`` itself when it
is strict UTF-8 JSON (the fast, common case), else ``value`` written again as strict JSON, so
the upstream reads exactly what the gateway checked.  A value that strict JSON cannot carry
(an integer past 64 bits, a lone surrogate) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson


class NotJson(ValueError):
    """The body cannot be read as JSON."""


@dataclass(frozen=True, slots=True)
class Parsed:
    value: Any
    body: bytes


def parse(raw: bytes) -> Parsed:
    try:
        return Parsed(orjson.loads(raw), raw)
    except orjson.JSONDecodeError as exc:
        strict_error = str(exc)
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NotJson(strict_error) from None
    try:
        body = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise NotJson(f"the body cannot be forwarded as strict JSON: {exc}") from None
    return Parsed(value, body)
