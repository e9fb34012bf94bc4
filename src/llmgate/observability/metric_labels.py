"""The label values of llmgate's metrics, derived from a request: which of the route's URI and
host patterns matched, the upstream node, nginx's ``$request_length``, and the bounded
``llm_model`` values.

``llm_model`` is the one label a client chooses (the request's ``model``, echoed by the
provider), so its values are bounded per process (``ModelLabels``): the first ``max_models``
models of calls the provider served get their own series, later ones fold into ``other``; a
model name is cut at ``MAX_MODEL_LABEL`` characters, as APISIX does.
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import TYPE_CHECKING

from llmgate.http.context import RouteInfo
from llmgate.routing.hosts import normalize_host

if TYPE_CHECKING:
    from aiohttp import web

    from llmgate.ai.call import LlmCall
    from llmgate.http.context import RequestContext

# Model names come from requests and responses: capped, as APISIX does.
MAX_MODEL_LABEL = 128
OTHER_MODEL = "other"


class ModelLabels:
    """The ``llm_model`` values of one process: at most ``limit`` distinct models, admitted
    first come, first served, when a call of theirs was served; every later one is
    ``other``."""

    __slots__ = ("_admitted", "_labels", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._admitted: set[str] = set()
        # Models as given whose label is admitted (or ""), and their label: one lookup on the
        # request path.  Bounded: names longer than ``MAX_MODEL_LABEL`` share a label.
        self._labels: dict[str | None, str] = {None: "", "": ""}

    def known(self, model: str | None) -> str:
        """The label of an admitted model, else ``other`` (nothing is admitted)."""
        label = self._labels.get(model)
        if label is not None:
            return label
        label = model_label(model)
        if label in self._admitted:
            self._remember(model, label)
            return label
        return OTHER_MODEL

    def admit(self, model: str | None) -> str:
        """The label of ``model``, admitting it while there is room."""
        label = self._labels.get(model)
        if label is not None:
            return label
        label = model_label(model)
        if label not in self._admitted:
            if len(self._admitted) >= self.limit:
                return OTHER_MODEL
            self._admitted.add(label)
        self._remember(model, label)
        return label

    def pair(self, call: LlmCall, admit: bool) -> tuple[str, str]:
        """The labels of ``call``'s two models (``asked_model``, ``model``): ``admit`` of each in
        turn, or ``known`` of each; one call and two lookups when both are remembered (the
        usual)."""
        model = call.model
        asked = call.client_model
        if asked is None:  # LlmCall.asked_model, inline (two calls a request)
            asked = model
        labels = self._labels
        first, second = labels.get(asked), labels.get(model)
        if first is None or second is None:
            label = self.admit if admit else self.known
            return label(asked), label(model)
        return first, second

    def _remember(self, model: str | None, label: str) -> None:
        if len(self._labels) < 2 * self.limit + 2:
            self._labels[model] = label


def request_type(call: LlmCall) -> str:
    """APISIX's ``$request_type`` of an LLM call (``LlmCall.request_type``)."""
    return call.request_type


def model_label(model: str | None) -> str:
    return model[:MAX_MODEL_LABEL] if model else ""


@functools.lru_cache(maxsize=1024)
def node_of(address: str | None) -> str:
    """The ``node`` label: the upstream node's host, without the port (APISIX: balancer_ip);
    remembered for the few addresses a process sends to."""
    if not address:
        return ""
    host, _, _ = address.rpartition(":")
    return host.strip("[]") if host else address


def single_node(ctx: RequestContext) -> str:
    """The ``node`` label of a call not yet sent: the upstream's host when it has one node."""
    pool = ctx.upstream
    return pool.nodes[0].host if pool is not None and len(pool.nodes) == 1 else ""


def matched_uri(route: RouteInfo, path: str) -> str:
    """Which of the route's URI patterns ``path`` matched (exact, else the longest prefix)."""
    uris = route.uris
    if len(uris) == 1:
        return uris[0]
    best = ""
    for uri in uris:
        if uri == path:
            return uri
        if uri.endswith("*") and path.startswith(uri[:-1]) and len(uri) > len(best):
            best = uri
    return best


def matched_host(route: RouteInfo, host: str | None) -> str:
    """Which of the route's host patterns the request's Host matched ("" without hosts)."""
    hosts = route.hosts
    if len(hosts) <= 1:
        return hosts[0] if hosts else ""
    name = normalize_host(host or "")
    for pattern in hosts:
        wanted = normalize_host(pattern)
        if wanted == name or (wanted.startswith("*") and name.endswith(wanted[1:], 1)):
            return pattern
    return ""


def request_length(inbound: web.BaseRequest) -> int:
    """nginx's ``$request_length``, estimated: request line, headers and declared body."""
    size = len(inbound.method) + len(inbound.raw_path) + 14  # " ", " HTTP/1.1\r\n", "\r\n"
    raw = inbound.raw_headers
    size += sum(map(len, chain.from_iterable(raw))) + 4 * len(raw)  # name, ": ", value, "\r\n"
    length = inbound.headers.get("Content-Length")  # inbound.content_length, without the call
    return size + (int(length) if length is not None else 0)
