"""A stored route -> the ``RouteEntry`` the router matches, with its compiled plugin chain.

Matching follows APISIX's radixtree router: ``uri``/``uris``, ``methods``, ``host``/``hosts``,
``remote_addr``/``remote_addrs`` (IPv4/IPv6 addresses and CIDRs), ``vars`` (lua-resty-expr) and
``priority``.  ``filter_func`` (Lua) and ``enable_websocket: true`` are refused: llmgate could
not honour them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from llmgate.http.expr import Expr, ExprError, ip_matcher
from llmgate.plugin_api.plugin import Plugin
from llmgate.proxy.upstream import PoolRegistry, UpstreamPool
from llmgate.routing import RouteEntry
from llmgate.runtime.instances import CompileError, Unavailable, fingerprint, instantiate
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import CompiledRoute, PluginChain
from llmgate.runtime.upstream_tls import client_certificate
from llmgate.schemas.common import Timeout
from llmgate.schemas.messages import describe
from llmgate.schemas.upstream import UpstreamSpec

# Fields of an upstream resource that are not part of how it connects.
_UPSTREAM_LABELS = ("id", "name", "desc", "labels", "create_time", "update_time")

Conditions = tuple[Any, Any]  # (remote_addrs test, vars test), each None when absent


def conditions(value: Mapping[str, Any]) -> Conditions:
    """The route's ``remote_addrs`` and ``vars`` tests, compiled."""
    addresses = value.get("remote_addrs")
    if addresses is None and value.get("remote_addr") is not None:
        addresses = [value["remote_addr"]]
    remote = None
    if addresses is not None:
        field = "remote_addrs" if "remote_addrs" in value else "remote_addr"
        try:
            remote = ip_matcher(addresses)
        except ExprError as exc:
            raise CompileError(f'property "{field}" validation failed: {exc}') from None
    variables = None
    if value.get("vars"):
        try:
            root = Expr.compile(value["vars"]).root  # None: an empty condition, always true
        except ExprError as exc:
            raise CompileError(f"failed to validate the 'vars' expression: {exc}") from None
        variables = root.eval if root is not None else None
    return remote, variables


def refuse_unsupported(value: Mapping[str, Any]) -> None:
    if value.get("filter_func") is not None:
        raise CompileError(
            "filter_func is not supported: llmgate runs no Lua (use vars for conditions)"
        )
    if value.get("enable_websocket") is True:
        raise CompileError("enable_websocket is not supported: llmgate proxies no WebSocket")


def pool_for(
    spec: Mapping[str, Any] | None,
    pools: PoolRegistry,
    label: str,
    ssls: Mapping[str, Mapping[str, Any]] | None = None,
) -> UpstreamPool | None:
    """The pool of an upstream config (inline or a resource's value), None without one.
    ``ssls``: the stored ssls by id, where ``tls.client_cert_id`` finds its certificate."""
    if spec is None:
        return None
    clean = {k: v for k, v in spec.items() if k not in _UPSTREAM_LABELS}
    try:
        parsed = UpstreamSpec.model_validate(clean)
    except ValidationError as exc:
        raise CompileError(f"invalid upstream: {describe(exc)}") from None
    _refuse_unsupported_upstream(parsed)
    certificate = client_certificate(parsed.tls, ssls or {})
    if certificate is None or parsed.scheme != "https":
        return pools.get(parsed, fingerprint(clean), label)
    verify = parsed.tls is not None and parsed.tls.verify
    key = fingerprint({**clean, " client certificate": certificate.identity()})
    return pools.get(parsed, key, label, certificate.context_maker(verify))


def _refuse_unsupported_upstream(spec: UpstreamSpec) -> None:
    """What an upstream may say that llmgate's client could not do (accepted means enforced)."""
    if spec.scheme in ("grpc", "grpcs"):
        raise CompileError(
            f"upstream scheme {spec.scheme} is not supported: llmgate speaks HTTP/1.1"
        )


def _uris(value: Mapping[str, Any]) -> tuple[str, ...]:
    return (value["uri"],) if "uri" in value else tuple(value.get("uris") or ())


def _hosts(value: Mapping[str, Any]) -> tuple[str, ...]:
    hosts = (value["host"],) if "host" in value else value.get("hosts")
    return tuple(hosts) if hosts else ()


def _entry(
    id: str, value: Mapping[str, Any], route: CompiledRoute, tests: Conditions
) -> RouteEntry[CompiledRoute]:
    methods = value.get("methods")
    return RouteEntry(
        id=id,
        uris=route.uris,
        methods=frozenset(methods) if methods else None,
        hosts=route.hosts or None,
        priority=int(value.get("priority", 0)),
        payload=route,
        remote_addrs=tests[0],
        vars=tests[1],
    )


def compile_route(
    id: str,
    value: Mapping[str, Any],
    upstreams: Mapping[str, Mapping[str, Any]],
    plugin_configs: Mapping[str, Mapping[str, Any]],
    services: Services,
    pools: PoolRegistry,
    *,
    service_values: Mapping[str, Mapping[str, Any]] | None = None,
    plugin_metadata: Mapping[str, Any] | None = None,
    ssls: Mapping[str, Mapping[str, Any]] | None = None,
    validating: bool = False,
) -> RouteEntry[CompiledRoute]:
    """The route ``id`` as the router serves it; ``CompileError`` when it cannot be.

    ``upstreams``, ``plugin_configs``, ``service_values`` and ``ssls`` map ids to stored
    values (plugin_configs: their ``plugins``; ssls: where an upstream's ``client_cert_id``
    finds its certificate).  As APISIX merges them: a service's plugins come
    first, a plugin_config's replace them by name and the route's own replace both; the route's
    ``upstream``/``upstream_id`` and ``hosts`` win over its service's.
    """
    refuse_unsupported(value)
    service_values = service_values or {}
    confs: dict[str, Any] = {}
    owners: dict[str, str] = {}
    service_id = value.get("service_id")
    service_name: str | None = None
    if service_id is not None:
        service = service_values.get(str(service_id))
        if service is None:
            raise CompileError(f"failed to fetch service configuration by id [{service_id}]")
        if service.get("enable_websocket") is True:
            raise CompileError("enable_websocket is not supported: llmgate proxies no WebSocket")
        for name, conf in (service.get("plugins") or {}).items():
            confs[name], owners[name] = conf, f"service/{service_id}"
        value = _inherit(value, service, service_id)
        name = service.get("name")
        service_name = name if isinstance(name, str) else None
    tests = conditions(value)
    config_id = value.get("plugin_config_id")
    if config_id is not None:
        plugins = plugin_configs.get(str(config_id))
        if plugins is None:
            raise CompileError(f"failed to fetch plugin config by id [{config_id}]")
        for name, conf in plugins.items():
            confs[name], owners[name] = conf, f"plugin_config/{config_id}"
    for name, conf in (value.get("plugins") or {}).items():
        confs[name], owners[name] = conf, f"route/{id}"
    instances: list[Plugin] = []
    for name, conf in confs.items():
        plugin = instantiate(
            name, conf, services, owners[name], metadata=plugin_metadata, validating=validating
        )
        if plugin is not None:
            instances.append(plugin)
    upstream_conf = value.get("upstream")
    # The upstream's name as APISIX's health checks and upstream_status metric call it.
    upstream_name = value.get(_UPSTREAM_OWNER) or f"/apisix/routes/{id}"
    if value.get("upstream_id") is not None:  # APISIX looks at upstream_id first
        upstream_conf = upstreams.get(str(value["upstream_id"]))  # gone: 502 per request
        upstream_name = f"/apisix/upstreams/{value['upstream_id']}"
    route = CompiledRoute(
        id=id,
        name=value.get("name"),
        chain=PluginChain.of(instances),
        plugin_confs=confs,
        upstream=pool_for(upstream_conf, pools, upstream_name, ssls),
        owners=owners,
        uris=_uris(value),
        hosts=_hosts(value),
        timeout=_timeout(value),
        service_id=str(service_id) if service_id is not None else None,
        service_name=service_name,
        upstream_id=str(value["upstream_id"]) if value.get("upstream_id") is not None else None,
    )
    return _entry(id, value, route, tests)


# Where an upstream inherited from a service comes from (a key no stored value can hold).
_UPSTREAM_OWNER = " upstream owner"


def _inherit(
    route: Mapping[str, Any], service: Mapping[str, Any], service_id: Any
) -> dict[str, Any]:
    """The route's value with what it takes from its service: the upstream when it has none,
    the hosts when it has none."""
    value = dict(route)
    if value.get("upstream") is None and value.get("upstream_id") is None:
        if service.get("upstream_id") is not None:
            value["upstream_id"] = service["upstream_id"]
        elif service.get("upstream") is not None:
            value["upstream"] = service["upstream"]
            value[_UPSTREAM_OWNER] = f"/apisix/services/{service_id}"
    if value.get("host") is None and value.get("hosts") is None and service.get("hosts"):
        value["hosts"] = service["hosts"]
    return value


def compile_global_rule(
    id: str,
    value: Mapping[str, Any],
    services: Services,
    *,
    plugin_metadata: Mapping[str, Any] | None = None,
    validating: bool = False,
) -> list[Plugin]:
    """The plugin instances of global rule ``id`` (its disabled plugins left out)."""
    instances: list[Plugin] = []
    for name, conf in (value.get("plugins") or {}).items():
        plugin = instantiate(
            name,
            conf,
            services,
            f"global_rule/{id}",
            metadata=plugin_metadata,
            validating=validating,
        )
        if plugin is not None:
            instances.append(plugin)
    return instances


def _timeout(value: Mapping[str, Any]) -> Timeout | None:
    timeout = value.get("timeout")
    if not timeout:
        return None
    try:
        return Timeout.model_validate(timeout)
    except ValidationError as exc:
        raise CompileError(f"invalid timeout: {describe(exc)}") from None


def unavailable_route(
    id: str, value: Mapping[str, Any], services: Services
) -> RouteEntry[CompiledRoute] | None:
    """A stand-in for a route that never compiled: it matches what the route would match (or
    more, when its conditions are what fails) and answers 503, so its traffic never falls
    through to another route.  None when the value has no URI to match on."""
    uris = _uris(value)
    if not uris or not all(isinstance(uri, str) for uri in uris):
        return None
    try:
        tests = conditions(value)
    except CompileError:
        tests = (None, None)
    hosts = tuple(h for h in _hosts(value) if isinstance(h, str))
    route = CompiledRoute(
        id=id,
        name=value.get("name") if isinstance(value.get("name"), str) else None,
        chain=PluginChain.of([Unavailable(services, f"route {id}", value.get("plugins"))]),
        plugin_confs={},
        upstream=None,
        owners={},
        uris=uris,
        hosts=hosts,
    )
    methods = value.get("methods")
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        value = {**value, "methods": None}
    priority = value.get("priority", 0)
    if not isinstance(priority, int):
        value = {**value, "priority": 0}
    return _entry(id, value, route, tests)
