"""Store rows -> one immutable ``Snapshot``: router, plugin chains, consumers, auth indexes.

Pure apart from the upstream pools, which come from a ``PoolRegistry`` so that pools whose
config did not change are reused across snapshots (their keep-alive connections survive).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from llmgate.plugins import REGISTRY
from llmgate.plugins.base import Plugin
from llmgate.proxy.upstream import PoolRegistry, UpstreamPool
from llmgate.routing import RouteEntry, Router
from llmgate.runtime import envrefs
from llmgate.runtime.snapshot import (
    CompiledRoute,
    ConsumerEntry,
    CredentialEntry,
    PluginChain,
    Snapshot,
)
from llmgate.schemas.common import Timeout
from llmgate.schemas.upstream import UpstreamSpec
from llmgate.store import Item

log = logging.getLogger("llmgate.runtime")


def fingerprint(conf: Any) -> str:
    """A short digest of a config as stored (env references unresolved: no secret in keys)."""
    return hashlib.sha1(orjson.dumps(conf, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _disabled(conf: Mapping[str, Any]) -> bool:
    meta = conf.get("_meta")
    return isinstance(meta, dict) and meta.get("disable") is True


def instantiate(name: str, conf: dict[str, Any], services: Any, owner: str) -> Plugin | None:
    """A plugin instance for ``conf`` (None for unknown or disabled plugins)."""
    cls = REGISTRY.get(name)
    if cls is None or _disabled(conf):
        return None
    for env_name in envrefs.missing(conf):
        log.warning(
            "plugin %s of %s refers to unset environment variable %s", name, owner, env_name
        )
    config = cls.Config.model_validate(envrefs.resolve(conf))
    return cls(config, services, f"{owner}#{fingerprint(conf)}")


def _pool_for(
    spec: Mapping[str, Any] | None, pools: PoolRegistry, label: str
) -> UpstreamPool | None:
    if spec is None:
        return None
    clean = {
        k: v
        for k, v in spec.items()
        if k not in ("id", "name", "desc", "labels", "create_time", "update_time")
    }
    return pools.get(UpstreamSpec.model_validate(clean), fingerprint(clean), label)


def _consumers(items: Iterable[Item]) -> tuple[dict[str, ConsumerEntry], list[CredentialEntry]]:
    consumers: dict[str, ConsumerEntry] = {}
    credentials: list[CredentialEntry] = []
    raw_auth: list[tuple[str, str | None, str, dict[str, Any]]] = []
    for item in items:
        if item.kind not in ("consumers", "credentials"):
            continue
        plugins = item.value.get("plugins") or {}
        if item.kind == "consumers":
            others = {
                name: envrefs.resolve(conf)
                for name, conf in plugins.items()
                if name in REGISTRY and REGISTRY[name].kind != "auth" and not _disabled(conf)
            }
            consumers[item.id] = ConsumerEntry(
                username=item.id,
                plugins=others,
                labels=item.value.get("labels") or {},
                group_id=item.value.get("group_id"),
            )
            owner, credential_id = item.id, None
        else:
            owner, _, credential_id = item.id.partition("/")
        for name, conf in plugins.items():
            cls = REGISTRY.get(name)
            if cls is not None and cls.kind == "auth" and not _disabled(conf):
                raw_auth.append((owner, credential_id, name, conf))
    for owner, credential_id, name, conf in raw_auth:
        consumer = consumers.get(owner)
        if consumer is not None:
            credentials.append(
                CredentialEntry(consumer, credential_id, name, envrefs.resolve(conf))
            )
    return consumers, credentials


def compile_snapshot(
    revision: int, items: Iterable[Item], services: Any, pools: PoolRegistry
) -> Snapshot:
    """Build the snapshot of ``revision`` from every stored item."""
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)
    upstreams = {item.id: item.value for item in by_kind["upstreams"]}
    plugin_configs = {
        item.id: item.value.get("plugins") or {} for item in by_kind["plugin_configs"]
    }
    consumers, credentials = _consumers(by_kind["consumers"] + by_kind["credentials"])

    auth_index: dict[str, Any] = {}
    for name, cls in REGISTRY.items():
        if cls.kind == "auth":
            auth_index[name] = cls.build_index([c for c in credentials if c.plugin == name])

    entries: list[RouteEntry[CompiledRoute]] = []
    for item in by_kind["routes"]:
        value = item.value
        if value.get("status", 1) == 0:
            continue
        try:
            route = _compile_route(item, upstreams, plugin_configs, services, pools)
        except Exception:  # a stored route that cannot run must not take the others down
            log.exception("route %s cannot be compiled; it is not served", item.id)
            continue
        methods = value.get("methods")
        entries.append(
            RouteEntry(
                id=item.id,
                uris=route.uris,
                methods=frozenset(methods) if methods else None,
                hosts=route.hosts or None,
                priority=int(value.get("priority", 0)),
                payload=route,
            )
        )
    return Snapshot(revision, Router(entries), consumers, auth_index, services)


def _compile_route(
    item: Item,
    upstreams: Mapping[str, dict[str, Any]],
    plugin_configs: Mapping[str, dict[str, Any]],
    services: Any,
    pools: PoolRegistry,
) -> CompiledRoute:
    value = item.value
    confs: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    config_id = value.get("plugin_config_id")
    if config_id is not None:
        for name, conf in plugin_configs.get(str(config_id), {}).items():
            confs[name], owners[name] = conf, f"plugin_config/{config_id}"
    for name, conf in (value.get("plugins") or {}).items():
        confs[name], owners[name] = conf, f"route/{item.id}"
    plugins = [
        plugin
        for name, conf in confs.items()
        if (plugin := instantiate(name, conf, services, owners[name])) is not None
    ]
    hosts = (value["host"],) if "host" in value else value.get("hosts")
    upstream_conf = value.get("upstream")
    # The upstream's name as APISIX's health checks and upstream_status metric call it.
    upstream_name = f"/apisix/routes/{item.id}"
    if upstream_conf is None and value.get("upstream_id") is not None:
        upstream_conf = upstreams.get(str(value["upstream_id"]))
        upstream_name = f"/apisix/upstreams/{value['upstream_id']}"
    timeout = value.get("timeout")
    return CompiledRoute(
        id=item.id,
        name=value.get("name"),
        chain=PluginChain.of(plugins),
        plugin_confs=confs,
        upstream=_pool_for(upstream_conf, pools, upstream_name),
        owners=owners,
        uris=(value["uri"],) if "uri" in value else tuple(value.get("uris") or ()),
        hosts=tuple(hosts) if hosts else (),
        timeout=Timeout.model_validate(timeout) if timeout else None,
    )


def merge_consumer_chain(
    route: CompiledRoute, consumer: ConsumerEntry, services: Any
) -> PluginChain:
    """The route's plugins with the consumer's (non-auth) plugins overriding them by name."""
    kept = [p for p in route.chain.plugins if p.name not in consumer.plugins]
    owner = f"consumer/{consumer.username}"
    added = [
        plugin
        for name, conf in consumer.plugins.items()
        if (plugin := instantiate(name, dict(conf), services, owner)) is not None
    ]
    return PluginChain.of(kept + added)
