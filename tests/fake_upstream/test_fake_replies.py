"""The pure parts of the fake upstream: replies, token counts and embeddings."""

import base64
import math
import struct
from typing import Any

import pytest

from llmgate.fake_upstream import replies

META: dict[str, Any] = {"model": "m", "response_id": "chatcmpl-1", "created": 1}


def chat_body(*messages: tuple[str, object]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in messages]}


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("hello", 1),
        ("Hello, world!", 4),
        ("  spaced   out  ", 2),
        ("it's 3.5", 6),
    ],
)
def test_count_tokens(text: str, tokens: int) -> None:
    assert replies.count_tokens(text) == tokens


@pytest.mark.parametrize("text", ["", "one", "a b  c ", "  lead", "x.\ny"])
def test_split_pieces_concatenates_back(text: str) -> None:
    assert "".join(replies.split_pieces(text)) == text


def test_split_pieces_is_word_sized() -> None:
    assert replies.split_pieces("This is  it.") == ["This ", "is  ", "it."]


def test_reply_text_is_deterministic_and_prompt_specific() -> None:
    assert replies.reply_text("hi") == replies.reply_text("hi")
    assert replies.reply_text("hi") != replies.reply_text("hello")
    assert replies.reply_text("hi").startswith("This is a fake reply from llmgate.")


def test_answer_chat_uses_last_user_message_and_counts_all_messages() -> None:
    body = chat_body(
        ("system", "Be brief."),
        ("user", "first question"),
        ("assistant", "an answer"),
        ("user", "second question"),
        ("assistant", "trailing"),
    )
    answer = replies.answer_chat(body)
    assert answer.texts == (replies.reply_text("second question"),)
    assert answer.prompt_tokens == 3 + 2 + 2 + 2 + 1
    assert answer.completion_tokens == replies.count_tokens(answer.texts[0])
    assert answer.usage == {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def test_answer_chat_reads_text_parts_and_falls_back_to_last_message() -> None:
    parts = [
        {"type": "text", "text": "look "},
        {"type": "image_url"},
        {"type": "text", "text": "x"},
    ]
    assert replies.answer_chat(chat_body(("user", parts))).texts == (replies.reply_text("look x"),)
    no_user = replies.answer_chat(chat_body(("system", "only system")))
    assert no_user.texts == (replies.reply_text("only system"),)


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": []}, {"messages": "hi"}, {"messages": ["hi"]}],
)
def test_answer_chat_rejects_missing_messages(body: dict[str, Any]) -> None:
    with pytest.raises(replies.InvalidRequest, match="messages"):
        replies.answer_chat(body)


def test_request_model_defaults_and_validates() -> None:
    assert replies.request_model({}, "default") == "default"
    assert replies.request_model({"model": "gpt-4o"}, "default") == "gpt-4o"
    with pytest.raises(replies.InvalidRequest):
        replies.request_model({"model": 3}, "default")


def test_chat_response_shape() -> None:
    answer = replies.answer_chat(chat_body(("user", "hi")))
    response = replies.chat_response(answer, **META)
    assert response["object"] == "chat.completion"
    assert response["id"] == "chatcmpl-1"
    assert response["model"] == "m"
    assert response["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": answer.texts[0]},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert response["usage"] == answer.usage


def test_chat_chunks_without_usage() -> None:
    answer = replies.answer_chat(chat_body(("user", "hi")))
    chunks = replies.chat_chunks(answer, with_usage=False, **META)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert content == answer.texts[0]
    assert len(chunks) == len(replies.split_pieces(answer.texts[0])) + 2
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_chat_chunks_with_usage_end_with_a_usage_chunk() -> None:
    answer = replies.answer_chat(chat_body(("user", "hi")))
    chunks = replies.chat_chunks(answer, with_usage=True, **META)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == answer.usage
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_include_usage() -> None:
    assert replies.include_usage({"stream_options": {"include_usage": True}})
    assert not replies.include_usage({"stream_options": {"include_usage": False}})
    assert not replies.include_usage({"stream_options": "yes"})
    assert not replies.include_usage({})


def test_answer_completion_one_choice_per_prompt() -> None:
    single = replies.answer_completion({"prompt": "Say hi"})
    assert single.texts == (replies.reply_text("Say hi"),)
    assert single.prompt_tokens == 2
    many = replies.answer_completion({"prompt": ["a", "b c"]})
    assert many.texts == (replies.reply_text("a"), replies.reply_text("b c"))
    assert many.prompt_tokens == 3
    assert many.completion_tokens == sum(replies.count_tokens(t) for t in many.texts)


@pytest.mark.parametrize("body", [{}, {"prompt": []}, {"prompt": 5}, {"prompt": ["a", 1]}])
def test_answer_completion_rejects_bad_prompt(body: dict[str, Any]) -> None:
    with pytest.raises(replies.InvalidRequest, match="prompt"):
        replies.answer_completion(body)


def test_completion_chunks_per_choice() -> None:
    answer = replies.answer_completion({"prompt": ["a", "b"]})
    chunks = replies.completion_chunks(answer, with_usage=True, **META)
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    for index, text in enumerate(answer.texts):
        mine = [
            c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index
        ]
        assert "".join(choice["text"] for choice in mine) == text
        assert mine[-1]["finish_reason"] == "stop"
    assert chunks[-1] == {
        "id": "chatcmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": answer.usage,
    }


def test_embedding_vector_is_deterministic_unit_length() -> None:
    vector = replies.embedding_vector("hello")
    assert len(vector) == replies.DEFAULT_EMBEDDING_DIMS
    assert vector == replies.embedding_vector("hello")
    assert vector != replies.embedding_vector("hello!")
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, abs_tol=1e-4)
    assert len(replies.embedding_vector("hello", 32)) == 32


def test_embeddings_response() -> None:
    response = replies.embeddings_response({"input": ["a b", "c"], "model": "emb"}, "default")
    assert response["object"] == "list"
    assert response["model"] == "emb"
    assert [item["index"] for item in response["data"]] == [0, 1]
    assert response["data"][0] == {
        "object": "embedding",
        "index": 0,
        "embedding": replies.embedding_vector("a b"),
    }
    assert response["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_embeddings_token_arrays_and_base64() -> None:
    response = replies.embeddings_response(
        {"input": [[1, 2, 3], [4]], "encoding_format": "base64", "dimensions": 4}, "default"
    )
    assert response["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    decoded = struct.unpack("<4f", base64.b64decode(response["data"][0]["embedding"]))
    assert decoded == pytest.approx(replies.embedding_vector("1 2 3", 4), abs=1e-6)
    single = replies.embeddings_response({"input": [7, 8]}, "default")
    assert len(single["data"]) == 1
    assert single["usage"]["prompt_tokens"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": []},
        {"input": 3},
        {"input": ["a", 1]},
        {"input": "a", "dimensions": 0},
        {"input": "a", "dimensions": True},
        {"input": "a", "encoding_format": "int8"},
    ],
)
def test_embeddings_rejects_bad_input(body: dict[str, Any]) -> None:
    with pytest.raises(replies.InvalidRequest):
        replies.embeddings_response(body, "default")
