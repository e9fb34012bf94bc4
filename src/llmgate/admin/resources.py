"""The admin resources: each a declaration plus its own reference checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmgate.admin.compiling import (
    client_cert_id,
    compile_consumer_group,
    compile_consumer_value,
    compile_credential,
    compile_global_rule_value,
    compile_plugin_config,
    compile_plugin_metadata,
    compile_route_value,
    compile_service,
    compile_ssl_value,
    compile_upstream,
)
from llmgate.admin.kind import Address, Reference, ResourceKind
from llmgate.admin.sealing import seal_client_key, seal_inline_client_key, seal_key
from llmgate.credentials import index_form
from llmgate.errors import BadRequest
from llmgate.plugin_api.auth_consumer import AuthPlugin
from llmgate.plugins import REGISTRY
from llmgate.schemas import (
    Consumer,
    ConsumerGroup,
    Credential,
    GlobalRule,
    PluginConfig,
    PluginMetadata,
    Route,
    Service,
    Ssl,
    Upstream,
)
from llmgate.store import Reader, Writer

# --- routes -------------------------------------------------------------------------------


UPSTREAM_ID = Reference("upstream_id", "upstreams", "upstream")


ROUTES = ResourceKind(
    name="routes",
    kind="route",
    model=Route,
    filter_fields=frozenset({"upstream_id", "service_id", "plugin_config_id"}),
    references=(
        UPSTREAM_ID,
        Reference("service_id", "services", "service"),
        Reference("plugin_config_id", "plugin_configs", "plugin config"),
    ),
    prepare=seal_inline_client_key,
    compile=compile_route_value,
    secret_fields=("upstream.tls.client_key",),
)

# --- upstreams ----------------------------------------------------------------------------


async def _first_using(reader: Reader, kind: str, field: str, id: str) -> str | None:
    """The id of the first ``kind`` item whose ``field`` refers to ``id``."""
    for item in await reader.list(kind):
        if str(item.value.get(field)) == id:
            return item.id
    return None


async def _first_route_using(reader: Reader, field: str, id: str) -> str | None:
    return await _first_using(reader, "routes", field, id)


async def _check_upstream_delete(reader: Reader, id: str) -> None:
    route_id = await _first_route_using(reader, "upstream_id", id)
    if route_id is not None:
        raise BadRequest(f"can not delete this upstream, route [{route_id}] is still using it now")
    service_id = await _first_using(reader, "services", "upstream_id", id)
    if service_id is not None:
        raise BadRequest(
            f"can not delete this upstream, service [{service_id}] is still using it now"
        )


UPSTREAMS = ResourceKind(
    name="upstreams",
    kind="upstream",
    model=Upstream,
    plugin_scope=None,
    prepare=seal_client_key,
    delete_check=_check_upstream_delete,
    compile=compile_upstream,
    secret_fields=("tls.client_key",),
)

# --- services -----------------------------------------------------------------------------


async def _check_service_delete(reader: Reader, id: str) -> None:
    route_id = await _first_route_using(reader, "service_id", id)
    if route_id is not None:
        raise BadRequest(
            f"can not delete this service directly, route [{route_id}] is still using it now"
        )


SERVICES = ResourceKind(
    name="services",
    kind="service",
    model=Service,
    filter_fields=frozenset({"upstream_id"}),
    references=(UPSTREAM_ID,),
    prepare=seal_inline_client_key,
    delete_check=_check_service_delete,
    compile=compile_service,
    secret_fields=("upstream.tls.client_key",),
)

# --- global_rules -------------------------------------------------------------------------


async def _check_global_rule(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    """A plugin runs in one global rule at most (APISIX refuses a second)."""
    plugins = conf.get("plugins") or {}
    for other in await reader.list("global_rules"):
        if other.id == address.id:
            continue
        for name in plugins:
            if name in (other.value.get("plugins") or {}):
                raise BadRequest(
                    f"plugin '{name}' already exists in global rule with id '{other.id}'"
                )


GLOBAL_RULES = ResourceKind(
    name="global_rules",
    kind="global rule",
    model=GlobalRule,
    unsupported=frozenset({"post"}),
    check=_check_global_rule,
    compile=compile_global_rule_value,
)

# --- plugin_configs -----------------------------------------------------------------------


async def _check_plugin_config_delete(reader: Reader, id: str) -> None:
    route_id = await _first_route_using(reader, "plugin_config_id", id)
    if route_id is not None:
        raise BadRequest(
            f"can not delete this plugin config, route [{route_id}] is still using it now"
        )


PLUGIN_CONFIGS = ResourceKind(
    name="plugin_configs",
    kind="plugin config",
    model=PluginConfig,
    unsupported=frozenset({"post"}),
    delete_check=_check_plugin_config_delete,
    compile=compile_plugin_config,
)

# --- consumers and credentials: secrets at rest and unique credentials ---------------------

# What each auth plugin declares (``AuthPlugin.stored_as``, ``.unique_field``) is read here by
# name of plugin: no plugin is named in this module.


def _auth_plugins(plugins: Any) -> Iterator[tuple[str, type[AuthPlugin], dict[str, Any]]]:
    """(name, class, config) of each auth plugin configured in ``plugins``."""
    if not isinstance(plugins, dict):
        return
    for name, conf in plugins.items():
        cls = REGISTRY.get(name)
        if cls is not None and issubclass(cls, AuthPlugin) and isinstance(conf, dict):
            yield name, cls, conf


def _unique_values(plugins: Any) -> Iterator[tuple[str, str, str]]:
    """(plugin, attribute, stored form of the value) for each unique credential attribute."""
    for name, cls, conf in _auth_plugins(plugins):
        attr = cls.unique_field
        if attr is not None and isinstance(conf.get(attr), str):
            store = cls.stored_as.get(attr)
            yield name, attr, store(conf[attr]) if store is not None else conf[attr]


def hash_secrets(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with each auth plugin's ``stored_as`` fields in their stored form (basic-auth
    passwords hashed, key-auth keys digested)."""
    plugins = conf.get("plugins")
    if not isinstance(plugins, dict):
        return conf
    plugins = dict(plugins)
    for name, cls, section in list(_auth_plugins(plugins)):
        stored = {
            field: store(section[field])
            for field, store in cls.stored_as.items()
            if isinstance(section.get(field), str)
        }
        if stored:
            plugins[name] = {**section, **stored}
    return {**conf, "plugins": plugins}


async def _check_unique(reader: Reader, address: Address, conf: dict[str, Any]) -> None:
    """No other consumer (nor its credentials) has one of this one's unique credential
    attributes: one indexed lookup per attribute (``credential_keys``), not a scan."""
    me = (address.parent, address.id) if address.parent is not None else (address.id, None)
    for plugin, attr, stored in _unique_values(conf.get("plugins")):
        for kind, owner in await reader.credential_owners(plugin, index_form(stored)):
            if kind == "consumers":
                consumer, credential = owner, None
            else:
                consumer, _, credential = owner.partition("/")
            if address.parent is None and consumer == me[0]:
                continue  # a consumer never conflicts with itself or its own credentials
            if (consumer, credential) == me:
                continue
            described = f"consumer: {consumer}"
            if credential is not None:
                described = f"credential: {credential} of consumer: {consumer}"
            raise BadRequest(f"duplicate {attr} of plugin {plugin} found with {described}")


async def _delete_credentials(writer: Writer, username: str) -> None:
    await writer.delete_prefix("credentials", f"{username}/")


CONSUMERS = ResourceKind(
    name="consumers",
    kind="consumer",
    model=Consumer,
    unsupported=frozenset({"post", "patch"}),
    id_field="username",
    plugin_scope="consumer",
    references=(Reference("group_id", "consumer_groups", "consumer group"),),
    check=_check_unique,
    prepare=hash_secrets,
    cascade=_delete_credentials,
    compile=compile_consumer_value,
)

CREDENTIALS = ResourceKind(
    name="credentials",
    kind="credential",
    model=Credential,
    unsupported=frozenset({"post", "patch"}),
    plugin_scope="credential",
    check=_check_unique,
    prepare=hash_secrets,
    compile=compile_credential,
)

# --- consumer_groups ----------------------------------------------------------------------


async def _check_consumer_group_delete(reader: Reader, id: str) -> None:
    consumer = await _first_using(reader, "consumers", "group_id", id)
    if consumer is not None:
        raise BadRequest(
            f"can not delete this consumer group, consumer [{consumer}] is still using it now"
        )


CONSUMER_GROUPS = ResourceKind(
    name="consumer_groups",
    kind="consumer group",
    model=ConsumerGroup,
    unsupported=frozenset({"post"}),
    delete_check=_check_consumer_group_delete,
    compile=compile_consumer_group,
)

# --- plugin_metadata: one per plugin, under the plugin's name ------------------------------

PLUGIN_METADATA = ResourceKind(
    name="plugin_metadata",
    kind="plugin_metadata",
    model=PluginMetadata,
    unsupported=frozenset({"post", "patch"}),
    plugin_scope=None,
    compile=compile_plugin_metadata,
)

# --- ssls ---------------------------------------------------------------------------------


async def _check_ssl_delete(reader: Reader, id: str) -> None:
    """An ssl an upstream presents as its client certificate (``tls.client_cert_id``) stays
    while one names it, as an upstream does while a route names it."""
    for kind, noun, inline in (
        ("upstreams", "upstream", False),
        ("services", "service", True),
        ("routes", "route", True),
    ):
        for item in await reader.list(kind):
            upstream = item.value.get("upstream") if inline else item.value
            if str(client_cert_id(upstream)) == id:
                raise BadRequest(
                    f"can not delete this ssl, {noun} [{item.id}] is still using it now"
                )


SSLS = ResourceKind(
    name="ssls",
    kind="ssl",
    model=Ssl,
    plugin_scope=None,
    delete_check=_check_ssl_delete,
    prepare=seal_key,
    compile=compile_ssl_value,
    secret_fields=("key",),  # sealed, but key material all the same: not for the viewer
    unshown_fields=("key",),  # as APISIX: a GET never returns it (a write answers it sealed)
)

# --- kinds llmgate lists (empty) so APISIX tools work, and refuses to write ---------------


class _NoResource(BaseModel):
    """The model of a kind nothing can be written to (never validated against: every write
    is refused first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None


STREAM_ROUTES = ResourceKind(
    name="stream_routes",
    kind="stream route",
    model=_NoResource,
    plugin_scope=None,
    refuse_writes="llmgate has no stream routes: it proxies HTTP only (no TCP/UDP proxy)",
)
PROTOS = ResourceKind(
    name="protos",
    kind="proto",
    model=_NoResource,
    plugin_scope=None,
    refuse_writes="llmgate has no protos: gRPC transcoding (grpc-transcode) is not supported",
)
SECRETS = ResourceKind(
    name="secrets",
    kind="secret",
    model=_NoResource,
    plugin_scope=None,
    refuse_writes=(
        "llmgate has no secret managers: refer to environment variables with $env://NAME "
        "in plugin configs"
    ),
)

RESOURCES: dict[str, ResourceKind] = {
    kind.name: kind
    for kind in (
        ROUTES,
        SERVICES,
        UPSTREAMS,
        PLUGIN_CONFIGS,
        GLOBAL_RULES,
        CONSUMERS,
        CREDENTIALS,
        CONSUMER_GROUPS,
        PLUGIN_METADATA,
        SSLS,
        STREAM_ROUTES,
        PROTOS,
        SECRETS,
    )
}
