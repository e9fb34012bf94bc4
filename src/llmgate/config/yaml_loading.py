"""YAML as APISIX reads it, safely: no timestamps, a node count before any value is built, and
parser errors on one line."""

from __future__ import annotations

from typing import Any

import yaml


class Loader(yaml.SafeLoader):
    """YAML's safe loader, less timestamps: ``2024-01-01`` stays a string, as in APISIX."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# libyaml's parser when PyYAML has it: counting events is then some 20 times faster than
# building the values (which is Python code either way).
_EVENTS_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_EVENTS = (
    yaml.ScalarEvent,
    yaml.SequenceStartEvent,
    yaml.MappingStartEvent,
    yaml.AliasEvent,
)


def more_nodes_than(text: str, limit: int) -> bool:
    """Whether the YAML ``text`` has more than ``limit`` nodes (an alias counts once here;
    ``reading._expanded_size`` counts what it expands to), found from the parser's events before any
    value is built.  Text the parser refuses is left to the loader, which says why."""
    count = 0
    try:
        for event in yaml.parse(text, Loader=_EVENTS_LOADER):
            if isinstance(event, _NODE_EVENTS):
                count += 1
                if count > limit:
                    return True
    except yaml.YAMLError:
        return False
    return False


def where(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` (one line, for logs and the command line)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f" at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f": {exc}".replace("\n", " ")
