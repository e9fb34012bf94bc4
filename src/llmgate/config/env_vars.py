"""APISIX's ``${{NAME}}`` and ``${{NAME:=default}}`` in a configuration file, replaced by
environment variables: in YAML's text before it is parsed, in JSON's keys and string values after.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmgate.config.document import DocumentError

_ENV_VAR = re.compile(r"\$\{\{\s*([A-Za-z0-9_]+)(?::=(.*?))?\s*\}\}")


def substitute(text: str, environ: Mapping[str, str], source: str) -> tuple[str, bool]:
    """``text`` with every ``${{NAME}}`` / ``${{NAME:=default}}`` replaced; whether any was."""
    used = False

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None:
            value = default.strip() if default is not None else None
        if value is None:
            raise DocumentError(f"{source}: can't find environment variable {name}")
        used = True
        return value

    return _ENV_VAR.sub(replace, text), used


def substitute_values(node: Any, environ: Mapping[str, str], source: str) -> Any:
    """JSON's substitution, after parsing: in keys and string values; a string value made of a
    variable becomes a number or boolean when it reads as one (as APISIX does)."""
    if isinstance(node, dict):
        return {
            substitute(key, environ, source)[0]: substitute_values(value, environ, source)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [substitute_values(value, environ, source) for value in node]
    if isinstance(node, str):
        text, used = substitute(node, environ, source)
        if not used:
            return text
        if text in ("true", "false"):
            return text == "true"
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if re.fullmatch(r"-?\d+\.\d+", text):
            return float(text)
        return text
    return node
