"""Prompt transforms: template rendering, decoration, what the guard checks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llmgate.ai.prompts import (
    PromptTemplate,
    PromptTexts,
    decorate,
    guarded_text,
    prompt_texts,
    value_text,
)

RENDER = [
    pytest.param("{{prompt}}", {"prompt": "hola"}, "hola", id="plain"),
    pytest.param("{{ prompt }}", {"prompt": "hola"}, "hola", id="spaces"),
    pytest.param(
        "Explain {{p}}.", {"p": 'the "quoted"\nline'}, 'Explain the "quoted"\nline.', id="q"
    ),
    pytest.param("{{p}}", {"p": "a\\b </x> & 'y'"}, "a\\b </x> & 'y'", id="no-html-escape"),
    pytest.param(
        "{{p}}",
        {"p": "¿Quién es Pikachu? ピカチュウ 🐭"},
        "¿Quién es Pikachu? ピカチュウ 🐭",
        id="u",
    ),
    pytest.param("{{año}}", {"año": "2024"}, "2024", id="unicode-name"),
    pytest.param(
        "n={{n}} f={{f}} b={{b}}", {"n": 42, "f": 1.5, "b": True}, "n=42 f=1.5 b=true", id="n"
    ),
    pytest.param("{{l}} {{o}}", {"l": ["a", 1], "o": {"k": "v"}}, '["a",1] {"k":"v"}', id="json"),
    pytest.param("[{{missing}}]", {}, "[]", id="missing"),
    pytest.param("[{{n}}]", {"n": None}, "[]", id="null"),
    pytest.param("{{user.name}}", {"user": {"name": "Ash"}}, "Ash", id="nested"),
    pytest.param("{{user.name}}", {"user": "Ash"}, "", id="nested-missing"),
    pytest.param("{{a}}{{b}}", {"a": "{{b}}", "b": "x"}, "{{b}}x", id="not-recursive"),
    pytest.param("{{ 1 + 1 }} {x} {{", {}, "{{ 1 + 1 }} {x} {{", id="not-a-placeholder"),
]


@pytest.mark.parametrize(("text", "variables", "expected"), RENDER)
def test_render_text(text: str, variables: dict[str, Any], expected: str) -> None:
    template = PromptTemplate.compile({"messages": [{"role": "user", "content": text}]})
    rendered = template.render(variables)
    assert rendered == {"messages": [{"role": "user", "content": expected}]}
    # Whatever the values, the result serialises to JSON that reads back the same.
    assert orjson.loads(orjson.dumps(rendered)) == rendered


def test_render_keeps_other_fields_and_types() -> None:
    source = {
        "model": "gpt-{{version}}",
        "temperature": 0,
        "stream": False,
        "stop": None,
        "messages": [{"role": "system", "content": "fixed"}, {"role": "user", "content": "{{q}}"}],
    }
    template = PromptTemplate.compile(source)
    assert template.render({"version": "4o", "q": "hi"}) == {
        "model": "gpt-4o",
        "temperature": 0,
        "stream": False,
        "stop": None,
        "messages": [{"role": "system", "content": "fixed"}, {"role": "user", "content": "hi"}],
    }
    # Rendering never changes the template itself.
    assert template.render({})["messages"][1]["content"] == ""
    assert template.render({"q": "again"})["messages"][1]["content"] == "again"


@pytest.mark.parametrize(
    ("value", "text"),
    [("s", "s"), (None, ""), (0, "0"), (False, "false"), ([], "[]"), ({"a": None}, '{"a":null}')],
)
def test_value_text(value: Any, text: str) -> None:
    assert value_text(value) == text


SYSTEM = {"role": "system", "content": "S"}
AFTER = {"role": "system", "content": "A"}
USER = {"role": "user", "content": "U"}

DECORATE = [
    pytest.param([SYSTEM], [], {"messages": [USER]}, [SYSTEM, USER], id="prepend"),
    pytest.param([], [AFTER], {"messages": [USER]}, [USER, AFTER], id="append"),
    pytest.param([SYSTEM], [AFTER], {"messages": [USER]}, [SYSTEM, USER, AFTER], id="both"),
    pytest.param([SYSTEM, USER], [], {"messages": [AFTER]}, [SYSTEM, USER, AFTER], id="order"),
    pytest.param([SYSTEM], [], {"messages": []}, [SYSTEM], id="empty-messages"),
]


@pytest.mark.parametrize(("prepend", "append", "body", "messages"), DECORATE)
def test_decorate(prepend: list, append: list, body: dict, messages: list) -> None:
    decorated = decorate({"model": "m", **body, "stream": True}, prepend, append)
    assert decorated == {"model": "m", "messages": messages, "stream": True}
    assert list(decorated) == ["model", "messages", "stream"]  # field order kept


@pytest.mark.parametrize("body", [{"input": "x"}, {"prompt": "x"}, {"messages": "x"}, {}])
def test_decorate_leaves_non_chat_bodies(body: dict) -> None:
    assert decorate(body, [SYSTEM], [AFTER]) is None


def test_decorate_does_not_modify_its_input() -> None:
    body = {"messages": [USER]}
    decorate(body, [SYSTEM], [AFTER])
    assert body == {"messages": [USER]}


TEXTS = [
    pytest.param(
        {"messages": [SYSTEM, USER]},
        PromptTexts((("system", "S"), ("user", "U")), conversation=True),
        id="chat",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}]},
                {"role": "assistant", "tool_calls": []},
                {"role": "user", "content": [{"type": "image_url"}]},
                "junk",
            ]
        },
        PromptTexts((("user", "a"),), conversation=True),
        id="parts",
    ),
    pytest.param({"input": "hola"}, PromptTexts((("user", "hola"),), False), id="embeddings"),
    pytest.param(
        {"input": ["a", "b", 3]}, PromptTexts((("user", "a"), ("user", "b")), False), id="inputs"
    ),
    pytest.param({"prompt": "p"}, PromptTexts((("user", "p"),), False), id="completions"),
    pytest.param({"model": "m"}, None, id="not-llm"),
    pytest.param(["messages"], None, id="array"),
    pytest.param("text", None, id="string"),
]


@pytest.mark.parametrize(("body", "texts"), TEXTS)
def test_prompt_texts(body: Any, texts: PromptTexts | None) -> None:
    assert prompt_texts(body) == texts


HISTORY = PromptTexts(
    (("system", "sys"), ("user", "first"), ("assistant", "reply"), ("user", "last")), True
)
ASSISTANT_LAST = PromptTexts((("user", "first"), ("assistant", "reply")), True)

GUARDED = [
    pytest.param(HISTORY, False, False, "last", id="default-last-user"),
    pytest.param(HISTORY, False, True, "first last", id="history-users"),
    pytest.param(HISTORY, True, False, "last", id="all-roles-last"),
    pytest.param(HISTORY, True, True, "sys first reply last", id="everything"),
    # The last of the checked roles' messages: a trailing assistant (or system) message
    # must not hide the user's prompt from the guard.
    pytest.param(ASSISTANT_LAST, False, False, "first", id="last-user-before-assistant"),
    pytest.param(
        PromptTexts((("system", "s"), ("assistant", "a")), True), False, False, None, id="no-user"
    ),
    # Every role: the last turn, from the user's last message on.
    pytest.param(ASSISTANT_LAST, True, False, "first reply", id="last-turn-any-role"),
    pytest.param(
        PromptTexts((("system", "s"), ("assistant", "a")), True),
        True,
        False,
        "a",
        id="no-user-any-role",
    ),
    pytest.param(PromptTexts((), True), True, True, None, id="nothing"),
    pytest.param(PromptTexts((("user", "a"), ("user", "b")), False), False, False, "a b", id="in"),
]


@pytest.mark.parametrize(("texts", "all_roles", "all_history", "expected"), GUARDED)
def test_guarded_text(
    texts: PromptTexts, all_roles: bool, all_history: bool, expected: str | None
) -> None:
    assert guarded_text(texts, all_roles=all_roles, all_history=all_history) == expected
