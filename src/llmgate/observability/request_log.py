"""The data plane's access log: one line per request on standard output, as APISIX's.

APISIX (nginx) writes ``logs/access.log`` in its default ``access_log_format``::

    $remote_addr - $remote_user [$time_local] $http_host "$request" $status $body_bytes_sent
    $request_time "$http_referer" "$http_user_agent" $upstream_addr $upstream_status
    $upstream_response_time "$upstream_scheme://$upstream_host$upstream_uri"

llmgate writes the same line on standard output (``--log-format json``: one JSON object with
those fields by name, and ``time`` in UTC).  ``access_log = false`` (``--access-log off``,
``LLMGATE_ACCESS_LOG=off``) turns it off.

A request that called an LLM gets more fields after APISIX's (SPEC §4: token usage is in the
access log), ``name=value`` each, named as APISIX's variables: ``request_id``, ``route_id``,
``request_type``, ``llm_model``, ``llm_prompt_tokens``, ``llm_completion_tokens`` and
``llm_total_tokens`` (the same keys in a JSON line).

What differs from nginx, on purpose:

- secrets are never written: credential query arguments (``api_key``, ``key``, ``token``...,
  and the one a route's key-auth reads) are masked in ``$request`` and ``$http_referer``, and
  every query value the gateway sends upstream is masked (a provider key may travel there);
- ``$remote_user`` is the consumer the request authenticated as, never the user name a client
  sent (``Authorization: Basic`` may carry an API key as its user name);
- every byte that is not printable ASCII, and ``"`` and ``\\``, is written ``\\xHH`` (nginx's
  ``escape=default``), so a client cannot forge a line or a field with CR, LF or quotes, nor
  send terminal escapes to whoever reads the log.

The line is written when the response is finished (aiohttp's access-log hook, so requests the
gateway refused before routing are logged too: 400, 404, 414, 431, 505); a request whose client
left before its response was done is logged with nginx's 499.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from llmgate.ai.call import LlmCall
from llmgate.http.context import (
    CONTEXT,
    HEAD_BYTES,
    UPSTREAM_TRIES,
    RequestContext,
    upstream_addrs,
    upstream_host,
    upstream_response_times,
    upstream_scheme,
    upstream_statuses,
)
from llmgate.observability.log_secrets import (
    SECRET_ARGS,
    auth_names,
    masked_query,
    masked_upstream_uri,
)
from llmgate.observability.log_values import TIME_LOCAL

# nginx's status for a request whose client went away before it was answered.
CLIENT_CLOSED = 499

_SAFE = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}
_ESCAPES = {byte: chr(byte) if byte in _SAFE else f"\\x{byte:02X}" for byte in range(256)}
_BARE_ESCAPES = {**_ESCAPES, ord(" "): "\\x20"}


def escaped(text: str | None, quoted: bool = True) -> str:
    """``text`` as nginx writes a variable (``escape=default``): printable ASCII as it is,
    ``"``, ``\\`` and every other byte as ``\\xHH``; None or empty as ``-``.  A field written
    without quotes (``quoted=False``) has its spaces escaped too, so it stays one field."""
    if not text:
        return "-"
    if (
        text.isascii()
        and text.isprintable()
        and '"' not in text
        and "\\" not in text
        and (quoted or " " not in text)
    ):
        return text
    table = _ESCAPES if quoted else _BARE_ESCAPES
    return "".join(table[byte] for byte in text.encode("utf-8", "surrogateescape"))


def _masked_url(url: str | None, secret: frozenset[str]) -> str | None:
    """A URL (a Referer) with its credential query arguments masked."""
    if not url or "?" not in url:
        return url
    head, _, query = url.partition("?")
    query, hash_mark, fragment = query.partition("#")
    return f"{head}?{masked_query(query, secret)}{hash_mark}{fragment}"


def _masked_referer(headers: Any, secret: frozenset[str]) -> str | None:
    """``$http_referer``: every Referer line (joined with ", " as nginx >= 1.23 does), each
    masked on its own.  (A request the parser refused has a plain empty dict of headers.)"""
    if "Referer" not in headers:
        return None
    return ", ".join(_masked_url(line, secret) or "" for line in headers.getall("Referer"))


def body_bytes_sent(response: web.StreamResponse | None) -> int:
    """nginx's ``$body_bytes_sent``: what was written after the response head (aiohttp counts
    the head and the body together)."""
    if response is None or not response.prepared:
        return 0
    head = 12 + len(str(response.status)) + len(response.reason or "")  # "HTTP/1.1 200 OK\r\n"
    head += sum(len(name) + len(value) + 4 for name, value in response.headers.items()) + 2
    return max(response.body_length - head, 0)


def _left(ctx: RequestContext | None) -> int:
    """``$body_bytes_sent`` of a request whose client left: what was sent after the head."""
    if ctx is None or not ctx.bytes_sent:
        return 0
    return max(ctx.bytes_sent - ctx.state.get(HEAD_BYTES, ctx.bytes_sent), 0)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{max(value, 0.0):.3f}"


class _Clock:
    """``$time_local`` text, made once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def local(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = time.strftime(TIME_LOCAL, time.localtime(second))
        return self._text


_clock = _Clock()


def entry(
    request: web.BaseRequest, response: web.StreamResponse | None, elapsed: float
) -> dict[str, Any]:
    """The fields of one request's line (text values not yet escaped)."""
    ctx: RequestContext | None = request.get(CONTEXT)
    secret_args = auth_names(ctx)[1] if ctx is not None else SECRET_ARGS
    path, mark, query = request.raw_path.partition("?")
    version = request.version
    status = response.status if response is not None else CLIENT_CLOSED
    if ctx is not None and ctx.status == CLIENT_CLOSED:
        status = CLIENT_CLOSED
    headers = request.headers
    fields: dict[str, Any] = {
        "remote_addr": request.remote,
        "remote_user": ctx.consumer.username if ctx is not None and ctx.consumer else None,
        "http_host": headers.get("Host"),
        "request": f"{request.method} {path}{mark}{masked_query(query, secret_args)} "
        f"HTTP/{version.major}.{version.minor}",
        "status": status,
        "body_bytes_sent": (
            body_bytes_sent(response)
            if response is not None and not (ctx is not None and ctx.upstream_broken)
            else _left(ctx)
        ),
        "request_time": _seconds(elapsed),
        "http_referer": _masked_referer(headers, secret_args),
        "http_user_agent": headers.get("User-Agent"),
        "upstream_addr": None,
        "upstream_status": None,
        "upstream_response_time": None,
        "upstream_uri": None,
    }
    if ctx is not None and ctx.upstream_addr is not None:
        fields["upstream_status"] = ctx.upstream_status
        fields["upstream_uri"] = (
            f"{upstream_scheme(ctx)}://{upstream_host(ctx)}{masked_upstream_uri(ctx)}"
        )
    if ctx is not None:
        # nginx lists every try in $upstream_addr, $upstream_status and
        # $upstream_response_time ("127.0.0.1:1, 127.0.0.1:2 502, 200 0.001, 0.010").
        fields["upstream_addr"] = upstream_addrs(ctx)
        fields["upstream_response_time"] = upstream_response_times(ctx)
        if ctx.state.get(UPSTREAM_TRIES):
            fields["upstream_status"] = upstream_statuses(ctx)
        fields.update(llm_fields(ctx))
    return fields


def llm_fields(ctx: RequestContext) -> dict[str, Any]:
    """The fields after APISIX's of a request that called an LLM: its id, route, and the call's
    type, model and tokens, named as APISIX's variables (none for other requests), and
    ``llm_usage_estimated`` (llmgate's) when the tokens are the gateway's estimate."""
    call = LlmCall.find(ctx)
    if call is None:
        return {}
    usage = call.usage
    fields: dict[str, Any] = {
        "request_id": ctx.request_id,
        "route_id": ctx.route.id,
        "request_type": call.request_type,
        "llm_model": call.model,
        "llm_prompt_tokens": usage.prompt_tokens if usage else 0,
        "llm_completion_tokens": usage.completion_tokens if usage else 0,
        "llm_total_tokens": usage.total_tokens if usage else 0,
    }
    if call.estimated:  # no usage came: the tokens are the gateway's estimate
        fields["llm_usage_estimated"] = True
    return fields


def text_line(fields: dict[str, Any], now: float) -> str:
    """APISIX's default access-log line."""
    e = escaped

    def bare(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return escaped(None if value is None else str(value), quoted=False)

    def listed(value: Any) -> str:
        # One entry per upstream try, ", "-separated as nginx writes them (the values are the
        # gateway's own: node addresses, statuses, times).
        return bare(value).replace(",\\x20", ", ")

    return (
        f"{bare(fields['remote_addr'])} - {bare(fields['remote_user'])} [{_clock.local(now)}] "
        f'{bare(fields["http_host"])} "{e(fields["request"])}" {fields["status"]} '
        f"{fields['body_bytes_sent']} {bare(fields['request_time'])} "
        f'"{e(fields["http_referer"])}" "{e(fields["http_user_agent"])}" '
        f"{listed(fields['upstream_addr'])} {listed(fields['upstream_status'])} "
        f'{listed(fields["upstream_response_time"])} "{e(fields["upstream_uri"])}"'
        + "".join(f" {name}={bare(fields[name])}" for name in _LLM_FIELDS if name in fields)
        + "\n"
    )


# Written after APISIX's fields when the request called an LLM (``llm_fields``).
_LLM_FIELDS = (
    "request_id", "route_id", "request_type", "llm_model", "llm_prompt_tokens",
    "llm_completion_tokens", "llm_total_tokens", "llm_usage_estimated",
)  # fmt: skip


def json_line(fields: dict[str, Any], now: float) -> str:
    """The same fields as one JSON object (strings escaped as in the text line)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    line: dict[str, Any] = {"time": f"{stamp}.{int(now * 1000) % 1000:03d}Z"}
    for name, value in fields.items():
        line[name] = escaped(value) if isinstance(value, str) else value
    return orjson.dumps(line).decode() + "\n"


def access_logger_class(fmt: str = "text", stream: IO[str] | None = None) -> type[Any]:
    """The aiohttp access-logger class (``EdgeServer(access_log_class=...)``) writing lines in
    ``fmt`` (``text`` or ``json``) to ``stream`` (standard output)."""
    render = json_line if fmt == "json" else text_line

    class AccessLines(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
            self._write(request, response, time_)

        def log_left(self, request: web.BaseRequest, elapsed: float) -> None:
            """A request whose client left first (``http.protocol.LeavingLogger``): 499."""
            self._write(request, None, elapsed)

        def _write(
            self, request: web.BaseRequest, response: web.StreamResponse | None, elapsed: float
        ) -> None:
            out = stream or sys.stdout
            try:
                out.write(render(entry(request, response, elapsed), time.time()))
                out.flush()
            except Exception:  # a closed or broken standard output never fails a request
                self.logger.debug("could not write the access log", exc_info=True)

    return AccessLines
