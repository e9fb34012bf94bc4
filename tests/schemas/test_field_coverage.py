"""Accepted means enforced: every config field the admin API accepts has a test of its effect
(``field_coverage.EFFECT_TESTS``) or a row in the "Fields without a runtime test" table of
``docs/compatibility.md`` (refused, not applicable, or pending with its owner).

The walk covers every field of the resource models (routes, upstreams, consumers, credentials,
plugin_configs, services, global_rules, consumer_groups, ssls) and of every plugin config (and
plugin metadata) in ``plugins.REGISTRY``, nested objects included, so a field added to a model without a test or a row fails here.  Each named test must exist and its
module must mention the field; a refused field names the test of its 400.
"""

from __future__ import annotations

import ast
import re
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from llmgate.plugin_api.config import Meta
from llmgate.plugins import REGISTRY
from llmgate.schemas import (
    Consumer,
    ConsumerGroup,
    Credential,
    GlobalRule,
    PluginConfig,
    Route,
    Service,
    Ssl,
    Upstream,
)
from llmgate.schemas.upstream import UpstreamSpec
from tests.schemas.field_coverage import EFFECT_TESTS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compatibility.md"
TABLE_TITLE = "## Fields without a runtime test"
STATUSES = re.compile(r"^(refused|not applicable|pending \([^)]+\))$")


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _walk(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key == "_meta":
            continue  # one Meta model for every plugin: walked once, as "_meta"
        path = f"{prefix}.{key}"
        yield path
        for sub in _models_in(info.annotation):
            if sub is UpstreamSpec:
                continue  # an inline upstream: its fields are the "upstreams." ones
            yield from _walk(sub, path)


@cache
def accepted_fields() -> frozenset[str]:
    """Every field the admin API accepts, as a path."""
    paths: list[str] = []
    for name, model in (
        ("routes", Route),
        ("upstreams", Upstream),
        ("consumers", Consumer),
        ("credentials", Credential),
        ("plugin_configs", PluginConfig),
        ("services", Service),
        ("global_rules", GlobalRule),
        ("consumer_groups", ConsumerGroup),
        ("ssls", Ssl),
    ):
        paths.extend(_walk(model, name))
    for name, cls in REGISTRY.items():
        paths.extend(_walk(cls.Config, f"plugins.{name}"))
        if cls.ConsumerConfig is not None:
            paths.extend(_walk(cls.ConsumerConfig, f"consumer_plugins.{name}"))
        if cls.MetadataConfig is not None:
            paths.extend(_walk(cls.MetadataConfig, f"plugin_metadata.{name}"))
    paths.extend(_walk(Meta, "_meta"))
    return frozenset(paths)


@cache
def table() -> dict[str, tuple[str, str]]:
    """The documented rows: field -> (status, why)."""
    text = DOC.read_text()
    assert TABLE_TITLE in text, f"{DOC} has no {TABLE_TITLE!r} section"
    section = text.split(TABLE_TITLE, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        status, why = cells[1], cells[2]
        for field in re.findall(r"`([^`]+)`", cells[0]):
            assert field not in rows, f"{field} has two rows"
            rows[field] = (status, why)
    return rows


@cache
def _module(path: str) -> tuple[str, frozenset[str]]:
    """A test module's text and the names of its test functions."""
    source = (ROOT / path).read_text()
    names = {
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    return source, frozenset(names)


def test_every_accepted_field_has_an_effect_test_or_a_documented_row() -> None:
    missing = sorted(accepted_fields() - EFFECT_TESTS.keys() - table().keys())
    assert not missing, "fields with neither a test nor a row in docs/compatibility.md:\n" + (
        "\n".join(missing)
    )


def test_no_entry_names_a_field_that_does_not_exist() -> None:
    fields = accepted_fields()
    assert not sorted(EFFECT_TESTS.keys() - fields), "stale EFFECT_TESTS entries"
    assert not sorted(table().keys() - fields), "stale rows in docs/compatibility.md"


def test_rows_say_why_and_agree_with_the_tests() -> None:
    for field, (status, why) in table().items():
        assert STATUSES.match(status), f"{field}: unknown status {status!r}"
        assert len(why) > 10, f"{field}: say why"
        if status == "refused":
            # A refusal is a behaviour too: the test of its 400 is named.
            assert field in EFFECT_TESTS, f"{field} is refused: name the test of its 400"
        else:
            assert field not in EFFECT_TESTS, f"{field} has a test: drop its {status!r} row"


def test_named_tests_exist_and_mention_their_field() -> None:
    wrong: list[str] = []
    for field, tests in EFFECT_TESTS.items():
        word = field.rsplit(".", 1)[-1]
        if not tests:
            wrong.append(f"{field}: no test named")
        for test in tests:
            path, _, name = test.partition("::")
            source, names = _module(path)
            if name not in names:
                wrong.append(f"{field}: {test} does not exist")
            elif word not in source:
                wrong.append(f"{field}: {path} never mentions {word!r}")
    assert not wrong, "\n".join(wrong)
