"""Validation is compilation: each resource built as the data plane will build it.

Every write goes through the data plane's own compile functions (``runtime/``), with a throwaway
``Services`` (so nothing long-lived is created) and ``validating=True`` (a ``$env://`` variable
unknown to this process is left as written, and a node's default Redis is assumed).  A
``CompileError`` is a 400 with its message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from llmgate.admin.kind import Address
from llmgate.errors import BadRequest
from llmgate.plugin_api.auth_consumer import AuthPlugin
from llmgate.plugins import REGISTRY
from llmgate.runtime.consumers import AuthConfig, auth_configs, compile_consumer, group_plugins
from llmgate.runtime.instances import CompileError, instantiate, metadata_of
from llmgate.runtime.redis_counters import RedisTarget
from llmgate.runtime.routes import compile_global_rule, compile_route, pool_for
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import ConsumerEntry, CredentialEntry
from llmgate.runtime.ssls import compile_ssl
from llmgate.store import Reader


@contextlib.asynccontextmanager
async def _services() -> AsyncIterator[Services]:
    # A ``policy: redis`` without ``redis_host`` counts in each data-plane node's own default
    # Redis (LLMGATE_REDIS_URL), which this process cannot know: as a ``$env://`` reference,
    # it is assumed set (a node without one reports the route as not compiling, 503).
    services = Services(redis_default=RedisTarget())
    try:
        yield services
    finally:
        await services.close()


@contextlib.contextmanager
def _as_bad_request() -> Iterator[None]:
    try:
        yield
    except CompileError as exc:
        raise BadRequest(str(exc)) from None


async def _stored(reader: Reader, kind: str, id: Any) -> dict[str, Any]:
    """``{id: value}`` of a referenced resource (empty when there is none)."""
    if id is None:
        return {}
    item = await reader.get(kind, str(id))
    return {str(id): item.value} if item is not None else {}


def client_cert_id(upstream: Any) -> Any:
    """The ssl id an upstream config (stored or inline, possibly not a dict) names as its
    client certificate (``tls.client_cert_id``); None when it names none."""
    tls = upstream.get("tls") if isinstance(upstream, dict) else None
    return tls.get("client_cert_id") if isinstance(tls, dict) else None


async def _client_ssls(reader: Reader, *upstreams: Any) -> dict[str, Any]:
    """The ssls these upstream configs name as their client certificate (``client_cert_id``),
    by id: one that is not there is not either (compiling says APISIX's 400)."""
    found: dict[str, Any] = {}
    for upstream in upstreams:
        found.update(await _stored(reader, "ssls", client_cert_id(upstream)))
    return found


async def compile_route_value(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    upstreams = await _stored(reader, "upstreams", conf.get("upstream_id"))
    configs = await _stored(reader, "plugin_configs", conf.get("plugin_config_id"))
    plugin_configs = {id: value.get("plugins") or {} for id, value in configs.items()}
    service_values = await _stored(reader, "services", conf.get("service_id"))
    for service in service_values.values():
        upstreams.update(await _stored(reader, "upstreams", service.get("upstream_id")))
    inline = [conf.get("upstream"), *(s.get("upstream") for s in service_values.values())]
    ssls = await _client_ssls(reader, *upstreams.values(), *inline)
    async with _services() as services:
        with _as_bad_request():
            compile_route(
                address.id or "new",
                conf,
                upstreams,
                plugin_configs,
                services,
                services.pools,
                service_values=service_values,
                ssls=ssls,
                validating=True,
            )


async def compile_service(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    """A service compiles as a route holding only it would (its plugins, its upstream)."""
    upstreams = await _stored(reader, "upstreams", conf.get("upstream_id"))
    ssls = await _client_ssls(reader, *upstreams.values(), conf.get("upstream"))
    sid = address.id or "new"
    async with _services() as services:
        with _as_bad_request():
            compile_route(
                f"service-{sid}",
                {"uri": "/", "service_id": sid},
                upstreams,
                {},
                services,
                services.pools,
                service_values={sid: conf},
                ssls=ssls,
                validating=True,
            )


async def compile_global_rule_value(
    _reader: Reader, address: Address, conf: dict[str, Any]
) -> None:
    async with _services() as services:
        with _as_bad_request():
            compile_global_rule(address.id or "new", conf, services, validating=True)


async def compile_plugin_config(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    async with _services() as services:
        with _as_bad_request():
            for name, plugin in (conf.get("plugins") or {}).items():
                owner = f"plugin_config/{address.id}"
                instantiate(name, plugin, services, owner, validating=True)


async def compile_upstream(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    ssls = await _client_ssls(reader, conf)
    async with _services() as services:
        with _as_bad_request():
            pool_for(conf, services.pools, f"upstream/{address.id}", ssls)


def _index(consumer: ConsumerEntry, credential_id: str | None, auth: list[AuthConfig]) -> None:
    """Build each auth plugin's index from these credentials, as the snapshot will."""
    for name, config in auth:
        cls = REGISTRY[name]
        if issubclass(cls, AuthPlugin):
            cls.build_index([CredentialEntry(consumer, credential_id, name, config)])


async def compile_consumer_value(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    username = str(conf.get("username") or address.id)
    groups = await _stored(reader, "consumer_groups", conf.get("group_id"))
    async with _services() as services:
        with _as_bad_request():
            entry, auth = compile_consumer(username, conf, services, groups=groups, validating=True)
            _index(entry, None, auth)


async def compile_consumer_group(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    """A group's plugins compile as a consumer's would (and it holds no auth plugin)."""
    id = address.id or "new"
    async with _services() as services:
        with _as_bad_request():
            for name, plugin in group_plugins(id, conf).items():
                instantiate(name, plugin, services, f"consumer_group/{id}", validating=True)


async def compile_plugin_metadata(_reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    """Plugin metadata validated by its plugin's model (which compiles what it holds: log
    formats, origins), as the data plane will."""
    name = str(address.id)
    if name not in REGISTRY:
        raise BadRequest("invalid plugin name")
    with _as_bad_request():
        metadata_of(name, conf)


async def compile_credential(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    with _as_bad_request():
        auth, _ = auth_configs(conf, validating=True)
        _index(ConsumerEntry(str(address.parent)), address.id, auth)


async def compile_ssl_value(_reader: Reader, _address: Address, conf: dict[str, Any]) -> None:
    """The certificate and key load into a TLS context, as the listener (or, for a client
    certificate, an upstream's client) will load them."""
    with _as_bad_request():
        compile_ssl(conf)
