"""The admin API's HTTP surface: one dispatcher over ``/apisix/admin/...``, as APISIX has."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from aiohttp import web
from pydantic import BaseModel

from llmgate.admin import json_schema, openapi
from llmgate.admin.auth import ROLE
from llmgate.admin.kind import Address
from llmgate.admin.resource import ResourceApi
from llmgate.admin.resources import RESOURCES
from llmgate.admin.shape import MAX_DEPTH, nested_deeper, whole_numbers
from llmgate.errors import (
    CLOSES_CONNECTION,
    BadRequest,
    HttpError,
    MethodNotAllowed,
    NotFound,
    error_response,
    json_response,
)
from llmgate.http.body import BodyTooLarge, ClientGone, RequestBody
from llmgate.http.limits import ClientLimits
from llmgate.observability import calls, usage_query
from llmgate.plugins import REGISTRY
from llmgate.store import Store

MAX_BODY = 1024 * 1024 * 3 // 2  # 1.5 MiB, as APISIX
STORE_KEY = web.AppKey("store", Store)
APIS_KEY = web.AppKey("resource_apis", dict)
# Awaited after each successful write: an in-process data plane loads the new revision before
# the admin answers, so a client's next request already sees its change.
AFTER_WRITE_KEY: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("after_write")
LIMITS_KEY = web.AppKey("client_limits", ClientLimits)


class _BodyOverLimit(BadRequest):
    """APISIX's 400 for a body over ``MAX_BODY``; the connection ends with it (the rest of the
    body is not read), as with the data plane's 413."""

    headers: ClassVar[dict[str, str]] = CLOSES_CONNECTION


async def _read_json(request: web.Request) -> Any:
    """The decoded body, None when empty; 400 when oversize, cut short, not JSON or nested too
    deep."""
    limits = request.app.get(LIMITS_KEY) or ClientLimits()
    body = RequestBody(
        request.content,
        request.content_length,
        request.body_exists,
        limits.body_timeout,
        request.transport,
    )
    try:
        raw = await body.read(MAX_BODY)
    except BodyTooLarge as exc:
        raise _BodyOverLimit(
            f"invalid request body: request size {exc.size} is greater than the maximum size "
            f"{MAX_BODY} allowed"
        ) from None
    except ClientGone:
        # An OSError: left to the store-errors middleware it read as the store going away.
        raise BadRequest("invalid request body: the client closed its connection") from None
    if not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid request body: {exc}") from None
    if nested_deeper(value, MAX_DEPTH):
        raise BadRequest(f"invalid request body: nested deeper than {MAX_DEPTH} levels")
    return whole_numbers(value)


def _route_segments(tail: str) -> tuple[str, Address, str]:
    """``consumers/jack/credentials/c1`` -> ("credentials", Address("c1", "jack"), "")."""
    segments = [s for s in tail.split("/") if s]
    if not segments:
        raise NotFound({"error_msg": "not found"})
    if "\x00" in tail:  # no id holds one, and PostgreSQL cannot even look one up
        raise NotFound({"message": "Key not found"})
    resource = segments[0]
    if resource == "consumers" and len(segments) >= 3 and segments[2] == "credentials":
        cred_id = segments[3] if len(segments) > 3 else None
        return "credentials", Address(cred_id, segments[1]), "/".join(segments[4:])
    if resource == "secrets" and len(segments) >= 3:
        # APISIX's secrets live under their manager: /secrets/vault/1.
        return resource, Address(f"{segments[1]}/{segments[2]}"), "/".join(segments[3:])
    resource_id = segments[1] if len(segments) > 1 else None
    return resource, Address(resource_id), "/".join(segments[2:])


def _check_ttl(request: web.Request) -> None:
    """APISIX's ``?ttl=`` (on PUT, POST and PATCH) lets the resource expire after that many
    seconds.  llmgate expires nothing, so a write asking for it is refused rather than kept for
    good; on every method a ttl that is no number is refused first, with APISIX's message."""
    ttl = request.query.get("ttl")
    if ttl is None:
        return
    try:
        float(ttl)
    except ValueError:
        raise BadRequest("invalid argument ttl: should be a number") from None
    if request.method in ("PUT", "POST", "PATCH"):
        raise BadRequest("ttl is not supported: llmgate does not expire resources")


_METHODS = frozenset({"GET", "PUT", "POST", "PATCH", "DELETE"})
# The first segment of the admin paths that are no resource; their own routes take the methods
# they answer, and any other method ends in resource_handler.
_ENDPOINTS = frozenset({"plugins", "schema", "openapi.json", "usage"})


async def resource_handler(request: web.Request) -> web.StreamResponse:
    method = request.method
    try:
        name, address, sub_path = _route_segments(request.match_info["tail"])
        api: ResourceApi | None = request.app[APIS_KEY].get(name)
        if api is None:
            if name in _ENDPOINTS:  # reached with a method it does not take (APISIX's answer)
                raise NotFound({"error_msg": "not found"})
            raise NotFound({"error_msg": f"Unsupported resource type: {name}"})
        if method not in _METHODS:
            raise NotFound({"error_msg": "not found"})
        if sub_path and method != "PATCH":
            # Only PATCH addresses a path inside a resource (/routes/1/plugins/x).
            raise BadRequest(f"{method} does not take a path below the resource id")
        conf = await _read_json(request) if method in ("PUT", "POST", "PATCH") else None
        _check_ttl(request)
    except HttpError as error:
        return error_response(error)
    try:
        if method == "GET":
            # Secrets are shown to the admin role only.
            status, body = await api.get(
                address, request.query, masked=request.get(ROLE) != "admin"
            )
        elif method == "PUT":
            status, body = await api.put(address, conf)
        elif method == "POST":
            status, body = await api.post(address, conf)
        elif method == "PATCH":
            status, body = await api.patch(address, sub_path, conf)
        else:
            status, body = await api.delete(address, request.query.get("force") == "true")
    except HttpError as error:
        # As APISIX: whatever the resource answers, a refusal too, carries the API version;
        # what is refused before a resource is asked (key, resource type, body) does not.
        response = error_response(error)
        response.headers["X-API-VERSION"] = "v3"
        return response
    after_write = request.app.get(AFTER_WRITE_KEY)
    if after_write is not None and method != "GET":
        await after_write()
    return json_response(status, body, headers={"X-API-VERSION": "v3"})


async def plugins_list(request: web.Request) -> web.Response:
    """``GET /apisix/admin/plugins/list``: names by priority, highest first, as APISIX."""
    subsystem = request.query.get("subsystem", "http")
    if subsystem not in ("http", "stream"):
        return web.Response(status=400, text="invalid subsystem passed")
    if subsystem == "stream":
        return json_response(200, [])
    names = sorted(REGISTRY, key=lambda name: (-REGISTRY[name].priority, name))
    return json_response(200, names)


async def plugin_schema(request: web.Request) -> web.Response:
    """``GET /apisix/admin/plugins/{name}`` (and ``/schema/plugins/{name}``, which APISIX
    routes to the same place): a plugin's schema (``?schema_type=consumer|metadata``), or with
    ``?all=true`` every plugin as ``{name: {schema, consumer_schema?, priority, ...}}``."""
    subsystem = request.query.get("subsystem", "http")
    if subsystem not in ("http", "stream"):
        return error_response(BadRequest(f"unsupported subsystem: {_shown(subsystem)}"))
    if request.query.get("all") == "true":
        if subsystem == "stream":
            return json_response(200, {})
        return json_response(200, json_schema.all_plugins())
    name = request.match_info.get("name", "")
    plugin = REGISTRY.get(name) if subsystem == "http" else None
    if plugin is None:
        return json_response(404, {"error_msg": f"plugin not found in subsystem {subsystem}"})
    schema = json_schema.plugin_schema(plugin, request.query.get("schema_type"))
    if schema is None:
        return error_response(BadRequest("not found schema"))
    return json_response(200, schema)


def _schema_models() -> dict[str, type[BaseModel]]:
    """APISIX's schema names (``core.schema.route``...): each resource's singular."""
    return {kind.kind.replace(" ", "_"): kind.model for kind in RESOURCES.values()}


async def resource_schema(request: web.Request) -> web.Response:
    """``GET /apisix/admin/schema/{name}``: a resource's JSON schema (``route``, ``upstream``,
    ``consumer``, ``credential``, ``plugin_config``...), APISIX's 400 for any other name."""
    name = request.match_info["name"]
    model = _schema_models().get(name)
    if model is None:
        return error_response(BadRequest(f"not found schema: {_shown(name)}"))
    return json_response(200, json_schema.model_schema(model))


def _shown(text: str, limit: int = 64) -> str:
    """A name from the URL as an error message shows it: cut, never the whole of it."""
    return text if len(text) <= limit else f"{text[:limit]}..."


async def validate_resource(request: web.Request) -> web.StreamResponse:
    """``POST /apisix/admin/schema/validate/{resource}``: 200 (empty body) when a PUT of the
    body would be accepted now, else its 400 with the same message.  Nothing is written."""
    name = request.match_info["resource"]
    api: ResourceApi | None = request.app[APIS_KEY].get(name)
    try:
        if api is None:
            raise NotFound({"error_msg": f"Unsupported resource type: {_shown(name)}"})
        conf = await _read_json(request)
        if conf is None:
            raise BadRequest("missing configurations")
        address = Address(None)
        if isinstance(conf, dict):
            own_id = conf.get(api.kind.id_field or "id")
            if isinstance(own_id, (str, int)) and not isinstance(own_id, bool):
                address = Address(str(own_id))
        async with request.app[STORE_KEY].read() as reader:
            await api.validate(reader, address, conf)
    except HttpError as error:
        return error_response(error)
    return web.Response(status=200)


async def plugins_reload(_request: web.Request) -> web.Response:
    """``PUT /apisix/admin/plugins/reload``: APISIX re-reads its plugin list; llmgate's is
    built in, so there is nothing to reload, and it answers as APISIX does."""
    return web.Response(status=200, text="done")


async def plugins_reload_other(request: web.Request) -> web.Response:
    return error_response(
        MethodNotAllowed(
            f"please use PUT method to reload the plugins, {request.method} method is not allowed."
        )
    )


async def openapi_document(_request: web.Request) -> web.Response:
    """``GET /apisix/admin/openapi.json``: the OpenAPI 3.1 document of this API."""
    return json_response(200, openapi.document())


async def usage_summary(request: web.Request) -> web.Response:
    """``GET /apisix/admin/usage?consumer=&route=&model=&cache=&from=&to=&group_by=``
    (llmgate's extension): requests, tokens and cost per consumer, route, model, day and cache,
    as the data plane flushed them."""
    try:
        query = usage_query.parse_query(request.query)
    except HttpError as error:
        return error_response(error)
    return json_response(200, await usage_query.summarize(request.app[STORE_KEY], query))


async def usage_calls(request: web.Request) -> web.Response:
    """``GET /apisix/admin/usage/calls?request_id=&consumer=&route=&model=&from=&to=&limit=``
    (llmgate's extension): one record per LLM call, newest first."""
    try:
        query = calls.parse_calls_query(request.query)
    except HttpError as error:
        return error_response(error)
    return json_response(200, await calls.list_calls(request.app[STORE_KEY], query))


async def admin_root(request: web.Request) -> web.Response:
    """``/apisix/admin`` itself with any method but HEAD: 404, as APISIX (JSON)."""
    return error_response(NotFound({"error_msg": "not found"}))


async def admin_head(request: web.Request) -> web.Response:
    """``HEAD /apisix/admin``: an empty 200 without a key, as APISIX answers (a liveness probe
    of the admin listener)."""
    return web.Response(status=200)


def add_admin_routes(
    app: web.Application,
    store: Store,
    after_write: Callable[[], Awaitable[None]] | None = None,
    limits: ClientLimits | None = None,
) -> None:
    app[STORE_KEY] = store
    if limits is not None:
        app[LIMITS_KEY] = limits
    if after_write is not None:
        app[AFTER_WRITE_KEY] = after_write
    app[APIS_KEY] = {name: ResourceApi(kind, store) for name, kind in RESOURCES.items()}
    app.router.add_route("HEAD", "/apisix/admin", admin_head, name="admin-head")
    app.router.add_route("*", "/apisix/admin", admin_root)
    app.router.add_get("/apisix/admin/plugins/list", plugins_list)
    app.router.add_put("/apisix/admin/plugins/reload", plugins_reload)
    for method in ("GET", "POST", "DELETE", "PATCH"):
        app.router.add_route(method, "/apisix/admin/plugins/reload", plugins_reload_other)
    for prefix in ("/apisix/admin/plugins", "/apisix/admin/schema/plugins"):
        app.router.add_get(prefix, plugin_schema)
        app.router.add_get(prefix + "/{name}", plugin_schema)
    app.router.add_post("/apisix/admin/schema/validate/{resource}", validate_resource)
    app.router.add_get("/apisix/admin/schema/{name}", resource_schema)
    app.router.add_get("/apisix/admin/openapi.json", openapi_document)
    app.router.add_get("/apisix/admin/usage", usage_summary)
    app.router.add_get("/apisix/admin/usage/calls", usage_calls)
    # [\s\S]: an id may hold any character, a newline too (".*" would leave it to 404 text).
    app.router.add_route("*", r"/apisix/admin/{tail:[\s\S]*}", resource_handler)
