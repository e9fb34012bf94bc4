r"""PCRE pattern syntax, read once per pattern: what RE2 can run, and how to run the rest.

``read(pattern, extended)`` walks a pattern once, in time linear in its length, and returns a
``Reading`` with three renderings of it:

    re2           the pattern in RE2's dialect, or None when it uses a construct RE2 lacks:
                  back-references, look-around, atomic groups, possessive quantifiers,
                  branch reset, ``\Z`` ``\G`` ``\K`` ``\h`` ``\H`` ``\R`` ``\X``, extended
                  mode
    backtracking  the pattern in the ``regex`` module's dialect (``\Q…\E``, ``\x{…}``, ``\e``,
                  ``\cX``, ``(?'name'…)``, ``\k<name>`` and ``\Z`` translated)
    skeleton      the pattern with those constructs replaced by RE2 ones of the same shape:
                  when RE2 compiles it, the pattern's repetitions fit RE2's limits, which bounds
                  what the backtracking engine is given to compile (``(?:a{1000}){1000}``
                  would cost it seconds and gigabytes)

and ``end_anchor``: whether a ``$`` stands outside character classes (RE2's ``$`` matches
only at the very end, PCRE's also before a final newline; the caller makes up for it).

Recursion, subroutine calls, conditionals and relative back-references are refused with
``RegexError``: neither engine can run them as PCRE does within a bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class RegexError(ValueError):
    """A pattern (or option letters) that llmgate refuses: it does not compile, or no engine
    can run it within a bound."""


@dataclass(frozen=True, slots=True)
class Reading:
    re2: str | None
    backtracking: str
    skeleton: str
    end_anchor: bool


# Scanned with ``match`` at one position only: each of these is linear in what it reads.
_QUANTIFIER = re.compile(r"\{\d*(?:,\d*)?\}")
_FLAG_GROUP = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
_NAME = re.compile(r"[A-Za-z_]\w*")
_HEX_BRACED = re.compile(r"\\x\{([0-9a-fA-F]{1,8})\}")
_BACKREF = re.compile(r"\\(?:[1-9]\d*|g\d+|g\{\d+\}|g\{[A-Za-z_]\w*\}|k<\w+>|k'\w+'|k\{\w+\})")
_RECURSION = re.compile(r"\(\?(?:R|[+-]?\d|&|P>)")

# Escapes RE2 lacks whose meaning the regex module shares.
_BACKTRACKING_ESCAPES = frozenset("GKZhHRX")
# PCRE option letters RE2 has inline; the others make the pattern backtracking-only.
_RE2_FLAGS = frozenset("imsU")


def _class_end(pattern: str, start: int) -> int:
    """The index just past the character class opening at ``start`` (its end if unclosed)."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
        elif pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            i = close + 2 if close >= 0 else i + 1
        elif char == "]":
            return i + 1
        else:
            i += 1
    return len(pattern)


class _Writer:
    """The three renderings, written side by side."""

    def __init__(self) -> None:
        self.re2: list[str] = []
        self.backtracking: list[str] = []
        self.skeleton: list[str] = []
        self.needs_backtracking = False
        self.end_anchor = False

    def same(self, text: str) -> None:
        self.re2.append(text)
        self.backtracking.append(text)
        self.skeleton.append(text)

    def backtracking_only(self, text: str, skeleton: str, backtracking: str | None = None) -> None:
        self.needs_backtracking = True
        self.backtracking.append(text if backtracking is None else backtracking)
        self.skeleton.append(skeleton)


def read(pattern: str, extended: bool = False) -> Reading:
    out = _Writer()
    out.needs_backtracking = extended
    i, size = 0, len(pattern)
    while i < size:
        char = pattern[i]
        if char == "\\":
            i = _escape(pattern, i, out)
        elif char == "[":
            end = _class_end(pattern, i)
            out.same(pattern[i:end])
            i = end
        elif pattern.startswith("(?", i) or pattern.startswith("(*", i):
            i, extended = _group(pattern, i, out, extended)
        elif char in "*+?" or (char == "{" and _QUANTIFIER.match(pattern, i)):
            match = _QUANTIFIER.match(pattern, i) if char == "{" else None
            end = match.end() if match else i + 1
            out.same(pattern[i:end])
            i = end
            if pattern.startswith("+", i):
                out.backtracking_only("+", "")  # possessive
                i += 1
        elif extended and char.isspace():
            out.backtracking_only(char, "")
            i += 1
        elif extended and char == "#":
            end = pattern.find("\n", i)
            end = size if end < 0 else end + 1
            out.backtracking_only(pattern[i:end], "")
            i = end
        else:
            out.end_anchor = out.end_anchor or char == "$"
            out.same(char)
            i += 1
    skeleton = "".join(out.skeleton)
    return Reading(
        re2=None if out.needs_backtracking else "".join(out.re2),
        backtracking="".join(out.backtracking),
        skeleton=skeleton,
        end_anchor=out.end_anchor,
    )


def _escape(pattern: str, i: int, out: _Writer) -> int:
    """Write the escape at ``i``; the index after it."""
    letter = pattern[i + 1 : i + 2]
    if letter == "Q":
        close = pattern.find("\\E", i + 2)
        end = len(pattern) if close < 0 else close
        literal = pattern[i + 2 : end]
        out.re2.append(pattern[i : end + 2])
        out.backtracking.append(re.escape(literal))
        out.skeleton.append(re.escape(literal))
        return end + 2
    backref = _BACKREF.match(pattern, i)
    if backref is not None:
        text = backref.group()
        name = text[3:-1] if text[1] == "k" else text[2:].strip("{}") if text[1] == "g" else None
        out.backtracking_only(text, "x", f"\\g<{name}>" if name else None)
        return backref.end()
    if letter == "g":
        raise RegexError(
            f"unsupported reference at position {i}: relative back-references and subroutine calls"
        )
    if letter in _BACKTRACKING_ESCAPES:
        zero_width = letter in "GKZ"
        out.backtracking_only(
            pattern[i : i + 2], "" if zero_width else ".", r"(?=\n?\z)" if letter == "Z" else None
        )
        return i + 2
    if letter == "e":
        out.same(r"\x1b")
        return i + 2
    if letter == "c" and i + 2 < len(pattern):
        out.same(f"\\x{ord(pattern[i + 2].upper()) ^ 0x40:02x}")
        return i + 3
    if letter == "N" and not pattern.startswith("{", i + 2):
        out.same(r"[^\n]")
        return i + 2
    braced = _HEX_BRACED.match(pattern, i)
    if braced is not None:
        code = int(braced.group(1), 16)
        out.re2.append(braced.group())
        out.skeleton.append(braced.group())
        out.backtracking.append(f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}")
        return braced.end()
    out.same(pattern[i : i + 2])
    return i + 2


def _group(pattern: str, i: int, out: _Writer, extended: bool) -> tuple[int, bool]:
    """Write the ``(?…`` or ``(*…`` opening at ``i``; the index after it, and whether extended
    mode is on from there."""
    if pattern.startswith("(*", i) or _RECURSION.match(pattern, i):
        raise RegexError(f"unsupported group at position {i}: recursion and verbs")
    rest = i + 2
    if pattern.startswith("#", rest):
        closing = pattern.find(")", rest)
        end = len(pattern) if closing < 0 else closing + 1
        out.re2.append("")
        out.backtracking.append(pattern[i:end])
        return end, extended
    for opening in ("(?<=", "(?<!", "(?=", "(?!", "(?>", "(?|"):
        if pattern.startswith(opening, i):
            out.backtracking_only(opening, "(?:")
            return i + len(opening), extended
    if pattern.startswith("(?(", i):
        raise RegexError(f"unsupported group at position {i}: conditionals")
    if pattern.startswith("(?P=", i):
        closing = pattern.find(")", rest)
        end = len(pattern) if closing < 0 else closing + 1
        out.backtracking_only(pattern[i:end], "x")
        return end, extended
    if pattern.startswith("(?'", i):
        name = _NAME.match(pattern, i + 3)
        if name is not None and pattern.startswith("'", name.end()):
            out.same(f"(?P<{name.group()}>")
            return name.end() + 1, extended
    flags = _FLAG_GROUP.match(pattern, i)
    if flags is None:
        out.same("(?")
        return rest, extended
    on, off, close = flags.group(1), flags.group(2), flags.group(3)
    kept_on = "".join(f for f in on if f in _RE2_FLAGS)
    kept_off = "".join(f for f in off or "" if f in _RE2_FLAGS)
    kept = f"(?{kept_on}-{kept_off}{close}" if kept_off else f"(?{kept_on}{close}"
    if kept in ("(?)", "(?-)"):
        kept = ""
    elif kept in ("(?:", "(?-:"):
        kept = "(?:"
    if set(on + (off or "")) - _RE2_FLAGS - {"J"}:
        out.backtracking_only(flags.group(), kept)
    else:
        out.re2.append(kept)
        out.backtracking.append(flags.group())
        out.skeleton.append(kept)
    if "x" in on:
        extended = True
    if off is not None and "x" in off:
        extended = False
    return flags.end(), extended
