"""The node's counter service: exact limits across the data-plane workers of one node.

With ``--workers N`` the parent ``llmgate serve`` process runs a ``CounterServer`` on a Unix
socket; each worker's ``SharedCounters`` keeps one persistent connection to it and pipelines
its calls.  The server holds the state in a ``LocalCounters`` and applies each request between
two awaits, so every operation is atomic across the workers.

Framing, both ways: a 4-byte big-endian length, then a JSON array.

    request   [op, key, *args]      op: "i" incr(window, amount)   "p" peek(window)
                                        "v" reserve(window, amount, limit)
                                        "s" sliding(limit, window) "l" leaky(rate, burst)
                                        "a" acquire(limit)         "r" release()
    answer    [1, result]  or  [0, "why it failed"]

Answers come back in the order of the requests on a connection, so the client matches them
with a FIFO of futures and needs no request ids.

A connection is one worker: the limit-conn slots acquired over it are its, and when it ends
(the worker exited, or was SIGKILLed: the kernel closes its socket) they are freed at once.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import struct
from collections.abc import Callable
from typing import Any

import orjson

from llmgate.runtime.counters import CountersUnavailable, LocalCounters
from llmgate.tasks import cancel_and_wait

log = logging.getLogger("llmgate.counters")

_HEAD = struct.Struct("!I")
MAX_FRAME = 64 * 1024  # a key is a route label plus a rendered variable: far below this
_HELD = frozenset({"a", "r"})  # operations on slots the connection's worker holds
_FLUSH_AT = 256 * 1024  # answers buffered before the server waits for the socket to drain


def _frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if size > MAX_FRAME:
        raise ConnectionError(f"frame of {size} bytes is over the {MAX_FRAME} bytes limit")
    return await reader.readexactly(size)


class CounterServer:
    """Serves one ``LocalCounters`` to the node's workers over the Unix socket at ``path``."""

    def __init__(self, path: str, state: LocalCounters | None = None) -> None:
        self.path = path
        self.state = state or LocalCounters()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._holders = itertools.count(1)
        self._ops: dict[str, Callable[..., Any]] = {
            "i": self.state.incr_now,
            "p": self.state.peek_now,
            "v": self.state.reserve_now,
            "s": self.state.sliding_now,
            "l": self.state.leaky_now,
            "a": self.state.acquire_now,
            "r": self.state.release_now,
        }

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, request: bytes, holder: str = "") -> bytes:
        """The answer frame's payload for one request payload (sent by ``holder``)."""
        try:
            op, *args = orjson.loads(request)
            if op in _HELD:
                args.append(holder)
            return orjson.dumps([1, self._ops[op](*args)])
        except Exception as exc:  # a malformed request fails alone, the connection goes on
            return orjson.dumps([0, f"{type(exc).__name__}: {exc}"])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        holder = str(next(self._holders))
        try:
            while True:
                writer.write(_frame(self.answer(await _read_frame(reader), holder)))
                if writer.transport.get_write_buffer_size() > _FLUSH_AT:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker went away
        finally:
            self._connections.discard(writer)
            self.state.drop_holder(holder)
            writer.close()


class SharedCounters:
    """The ``Counters`` of a worker: calls into the node's counter service.

    Connects on first use and again after the connection broke; calls in flight on a broken
    connection, and calls that get no answer within ``timeout`` seconds, raise
    ``CountersUnavailable``.
    """

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path = path
        self.timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._pending: collections.deque[asyncio.Future[list[Any]]] = collections.deque()
        self._lock = asyncio.Lock()

    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        count, left = await self._call("i", key, window, amount)
        return count, left

    async def reserve(
        self, key: str, window: float, amount: int, limit: int
    ) -> tuple[bool, int, float]:
        admitted, count, left = await self._call("v", key, window, amount, limit)
        return admitted, count, left

    async def peek(self, key: str, window: float) -> tuple[int, float]:
        count, left = await self._call("p", key, window)
        return count, left

    async def sliding(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        accepted, remaining, reset = await self._call("s", key, limit, window)
        return accepted, remaining, reset

    async def leaky(self, key: str, rate: float, burst: float) -> float | None:
        result: float | None = await self._call("l", key, rate, burst)
        return result

    async def acquire(self, key: str, limit: int, ttl: int) -> int:
        result: int = await self._call("a", key, limit)
        return result

    async def release(self, key: str) -> int:
        result: int = await self._call("r", key)
        return result

    async def _call(self, *request: Any) -> Any:
        writer = self._writer or await self._connect()
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        # No await between the write and the append: answers arrive in this order.
        writer.write(_frame(orjson.dumps(request)))
        self._pending.append(answer)
        try:
            ok, value = await asyncio.wait_for(answer, self.timeout)
        except (ConnectionError, TimeoutError) as exc:
            raise CountersUnavailable(f"counter service: {exc or 'no answer'}") from exc
        if not ok:
            raise CountersUnavailable(f"counter service: {value}")
        return value

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is not None:
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                raise CountersUnavailable(
                    f"counter service at {self.path}: {exc.strerror or exc}"
                ) from exc
            self._writer = writer
            self._reading = asyncio.create_task(self._read(reader, writer))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                payload = await _read_frame(reader)
                answer = self._pending.popleft()
                if not answer.done():  # a call that timed out has given up on its answer
                    answer.set_result(orjson.loads(payload))
        except (asyncio.IncompleteReadError, ConnectionError, IndexError) as exc:
            log.warning("connection to the counter service lost: %s", exc or type(exc).__name__)
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            pending, self._pending = self._pending, collections.deque()
            for answer in pending:
                if not answer.done():
                    answer.set_exception(ConnectionError("connection lost"))

    async def close(self) -> None:
        if self._reading is not None:
            await cancel_and_wait(self._reading)
            self._reading = None
