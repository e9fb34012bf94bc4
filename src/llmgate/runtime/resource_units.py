"""Each kind of stored resource compiled as a unit of an ``Assembly``: on a ``CompileError`` it
keeps its last good version, or stands in (a 503, or left out) when it never compiled."""

from __future__ import annotations

from llmgate.http.tls import SniIndex
from llmgate.plugin_api.config import ConfigSection
from llmgate.plugin_api.plugin import Plugin
from llmgate.routing import RouteEntry
from llmgate.runtime.assembly import Assembly
from llmgate.runtime.consumers import (
    AuthConfig,
    auth_configs,
    compile_consumer,
    unavailable_consumer,
)
from llmgate.runtime.instances import Unavailable, metadata_of
from llmgate.runtime.parts import Context
from llmgate.runtime.routes import compile_global_rule, compile_route, unavailable_route
from llmgate.runtime.snapshot import CompiledRoute, ConsumerEntry, PluginChain
from llmgate.runtime.ssls import ContextCache, compile_ssl
from llmgate.store import Item


def consumer_unit(
    assembly: Assembly, item: Item, context: Context
) -> tuple[ConsumerEntry, list[AuthConfig]]:
    services = assembly.services
    compiled: tuple[ConsumerEntry, list[AuthConfig]] = assembly.unit(
        f"consumers/{item.id}",
        lambda: compile_consumer(
            item.id,
            item.value,
            services,
            groups=context.groups,
            plugin_metadata=context.metadata,
        ),
        lambda: unavailable_consumer(item.id, item.value, services),
    )
    return compiled


def credential_unit(assembly: Assembly, item: Item) -> list[AuthConfig]:
    services = assembly.services
    configs = assembly.unit(
        f"credentials/{item.id}",
        lambda: auth_configs(item.value, policy=services.env_policy)[0],
        lambda: None,  # an unusable credential lets nobody in
    )
    return list(configs or ())


def route_unit(
    assembly: Assembly, item: Item, context: Context
) -> RouteEntry[CompiledRoute] | None:
    if item.value.get("status", 1) == 0:
        return None
    services, pools = assembly.services, assembly.pools
    entry: RouteEntry[CompiledRoute] | None = assembly.unit(
        f"routes/{item.id}",
        lambda: compile_route(
            item.id,
            item.value,
            context.upstreams,
            context.plugin_configs,
            services,
            pools,
            service_values=context.service_values,
            plugin_metadata=context.metadata,
            ssls=context.ssls,
        ),
        lambda: unavailable_route(item.id, item.value, services),
    )
    return entry


def metadata_sections(assembly: Assembly, items: list[Item]) -> dict[str, ConfigSection]:
    """Each plugin's metadata, validated; one that does not validate keeps its last good
    version (or is left out: the plugin then runs without metadata)."""
    found: dict[str, ConfigSection] = {}
    for item in items:
        metadata = assembly.unit(
            f"plugin_metadata/{item.id}",
            lambda item=item: metadata_of(item.id, item.value),
            lambda: None,
        )
        if metadata is not None:
            found[item.id] = metadata
    return found


def certificates(assembly: Assembly, items: list[Item]) -> SniIndex:
    """The enabled server ssls by server name (a client certificate, ``type: client``, is
    an upstream's, never the listener's).  One that does not compile keeps its last good
    version (or is left out: its names fail the handshake)."""
    cache = assembly.services.shared.get_or_make("ssl-contexts", ContextCache, ContextCache)
    entries = []
    for item in items:
        if item.value.get("status", 1) == 0 or item.value.get("type") == "client":
            continue
        compiled = assembly.unit(
            f"ssls/{item.id}", lambda item=item: compile_ssl(item.value, cache), lambda: None
        )
        if compiled is not None:
            entries.append(compiled)
    cache.prune()
    return SniIndex(entries)


def global_chain(
    assembly: Assembly, rules: list[Item], metadata: dict[str, ConfigSection]
) -> PluginChain:
    """The plugins of every global rule in one chain.  A rule that never compiled stands in
    as a 503 for every request: its plugins may have been authentication or limits."""
    services = assembly.services
    plugins: list[Plugin] = []
    for item in rules:
        compiled = assembly.unit(
            f"global_rules/{item.id}",
            lambda item=item: compile_global_rule(
                item.id, item.value, services, plugin_metadata=metadata
            ),
            lambda item=item: [Unavailable(services, f"global rule {item.id}")],
        )
        plugins.extend(compiled)
    return PluginChain.of(plugins)
