"""The fake upstream's port speaks plain HTTP and TLS alike, sniffed from each connection."""

import asyncio
import ssl
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp
import orjson
import pytest

from llmgate.fake_upstream import FakeSettings, replies, serve
from llmgate.http import sniffing
from tests.processes import free_port

CHAT = "/v1/chat/completions"


def chat_body(prompt: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], **extra}


async def start(port: int, **kwargs: Any) -> asyncio.Task[None]:
    """`serve()` on 127.0.0.1:port in a task, once it answers."""
    task = asyncio.create_task(serve("127.0.0.1", port, FakeSettings(), **kwargs))
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            assert not task.done(), task
            try:
                async with session.get(f"http://127.0.0.1:{port}/__fake/health") as response:
                    assert response.status == 200
                    return task
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.02)
    task.cancel()
    pytest.fail("fake upstream did not start")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
async def port() -> AsyncIterator[int]:
    port = free_port()
    task = await start(port)
    yield port
    await stop(task)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def chat(session: aiohttp.ClientSession, url: str, prompt: str) -> Any:
    """The chat reply; an https URL makes aiohttp use TLS (without verifying the certificate)."""
    async with session.post(url, json=chat_body(prompt), ssl=False) as response:
        assert response.status == 200
        return await response.json()


def assert_chat_reply(body: Any, prompt: str) -> None:
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"]["content"] == replies.reply_text(prompt)
    assert body["usage"]["total_tokens"] > 0


async def test_plain_http_and_tls_on_the_same_port(
    port: int, session: aiohttp.ClientSession
) -> None:
    body = await chat(session, f"http://127.0.0.1:{port}{CHAT}", "over http")
    assert_chat_reply(body, "over http")
    body = await chat(session, f"https://127.0.0.1:{port}{CHAT}", "over https")
    assert_chat_reply(body, "over https")
    # Both kinds of connection are kept alive and reused side by side.
    for scheme in ("http", "https", "http", "https"):
        assert_chat_reply(await chat(session, f"{scheme}://127.0.0.1:{port}{CHAT}", scheme), scheme)


async def test_a_raw_tls_connection_negotiates_tls(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        assert ssl_object.getpeercert(binary_form=True)
        writer.write(b"GET /__fake/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            reply = await reader.read()
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert reply.endswith(b'{"status":"ok"}')
    finally:
        writer.close()


async def test_tls_stream_arrives_in_several_chunks(
    port: int, session: aiohttp.ClientSession
) -> None:
    url = f"https://127.0.0.1:{port}{CHAT}"
    async with session.post(url, json=chat_body("stream me", stream=True), ssl=False) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        chunks: list[bytes] = []
        pending = b""
        while True:
            data, end_of_chunk = await response.content.readchunk()
            pending += data
            if end_of_chunk and pending:
                chunks.append(pending)
                pending = b""
            elif not data and not end_of_chunk:
                break
    assert len(chunks) > 3
    assert chunks[-1] == b"data: [DONE]\n\n"
    events = [orjson.loads(chunk.removeprefix(b"data: ")) for chunk in chunks[:-1]]
    assert {event["object"] for event in events} == {"chat.completion.chunk"}
    text = "".join(event["choices"][0]["delta"].get("content", "") for event in events)
    assert text == replies.reply_text("stream me")


async def test_the_certificate_verifies_for_localhost_and_127_0_0_1(port: int) -> None:
    cert = resources.files("llmgate.fake_upstream") / "tls" / "fake-cert.pem"
    with resources.as_file(cert) as cafile:
        context = ssl.create_default_context(cafile=str(cafile))
    for host in ("127.0.0.1", "localhost"):
        connector = aiohttp.TCPConnector(ssl=context)
        async with (
            aiohttp.ClientSession(connector=connector) as verifying,
            verifying.get(f"https://{host}:{port}/__fake/health") as response,
        ):
            assert await response.json() == {"status": "ok"}


async def test_a_silent_connection_does_not_block_others(
    port: int, session: aiohttp.ClientSession
) -> None:
    _, silent = await asyncio.open_connection("127.0.0.1", port)
    _, closed = await asyncio.open_connection("127.0.0.1", port)
    closed.close()  # gone before sending a byte
    _, tls_silent = await asyncio.open_connection("127.0.0.1", port)
    tls_silent.write(b"\x16")  # the start of a TLS record, then nothing
    _, garbage = await asyncio.open_connection("127.0.0.1", port)
    garbage.write(b"\x16\x03\x01\x00\x05hello")  # not a TLS handshake
    try:
        async with asyncio.timeout(5):
            plain, tls = await asyncio.gather(
                chat(session, f"http://127.0.0.1:{port}{CHAT}", "plain"),
                chat(session, f"https://127.0.0.1:{port}{CHAT}", "tls"),
            )
        assert_chat_reply(plain, "plain")
        assert_chat_reply(tls, "tls")
    finally:
        for writer in (silent, tls_silent, garbage):
            writer.close()


async def test_a_silent_connection_is_closed_after_the_sniff_timeout(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sniffing, "SNIFF_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(5):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_cancelling_serve_closes_connections_and_frees_the_port() -> None:
    port = free_port()
    task = await start(port)
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    async with aiohttp.ClientSession() as session:
        # Keep-alive connections of both kinds stay open in the session's pool.
        assert_chat_reply(await chat(session, f"http://127.0.0.1:{port}{CHAT}", "a"), "a")
        assert_chat_reply(await chat(session, f"https://127.0.0.1:{port}{CHAT}", "b"), "b")
        async with asyncio.timeout(10):
            await stop(task)
        async with asyncio.timeout(5):
            assert await silent_reader.read() == b""
        silent.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            await chat(session, f"http://127.0.0.1:{port}{CHAT}", "c")
    # The port can be served again at once.
    task = await start(port)
    await stop(task)


async def test_without_tls_a_tls_client_fails(session: aiohttp.ClientSession) -> None:
    port = free_port()
    task = await start(port, tls=False)
    try:
        assert_chat_reply(await chat(session, f"http://127.0.0.1:{port}{CHAT}", "plain"), "plain")
        with pytest.raises(aiohttp.ClientError):
            await chat(session, f"https://127.0.0.1:{port}{CHAT}", "tls")
    finally:
        await stop(task)


def test_the_same_on_uvloop() -> None:
    """`run()` serves on uvloop when it is installed: sniffing and hand-over work there too."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        port = free_port()
        task = await start(port)
        _, silent = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with aiohttp.ClientSession() as session, asyncio.timeout(10):
                plain, tls = await asyncio.gather(
                    chat(session, f"http://127.0.0.1:{port}{CHAT}", "plain"),
                    chat(session, f"https://127.0.0.1:{port}{CHAT}", "tls"),
                )
                assert_chat_reply(plain, "plain")
                assert_chat_reply(tls, "tls")
                url = f"https://127.0.0.1:{port}{CHAT}"
                async with session.post(url, json=chat_body(stream=True), ssl=False) as response:
                    body = await response.read()
                assert body.count(b"data: ") > 3
                assert body.endswith(b"data: [DONE]\n\n")
        finally:
            silent.close()
            await stop(task)
        task = await start(port)  # the port is free again
        await stop(task)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
