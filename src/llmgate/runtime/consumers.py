"""Stored consumers and credentials -> ``ConsumerEntry`` objects and auth configs.

A consumer's non-auth plugins are compiled into its own chain when the snapshot is built;
requests merge that chain over the route's (``Snapshot.chain_for``).  Auth plugin configs (what a
consumer or a credential carries for basic-auth, key-auth...) are resolved and validated against
the plugin's consumer model here, so a ``$env://`` secret that resolves to a bad shape is a
compile error, never a failure in a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.envrefs import DEFAULT_POLICY
from llmgate.runtime.instances import (
    CompileError,
    Unavailable,
    disabled,
    instantiate,
    plugin_class,
    resolved,
    validated,
)
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import ConsumerEntry, PluginChain
from llmgate.schemas.envrefs import EnvPolicy

# One auth plugin config: (plugin name, its config with $env resolved, secrets as stored).
AuthConfig = tuple[str, Mapping[str, Any]]


def auth_configs(
    value: Mapping[str, Any], *, validating: bool = False, policy: EnvPolicy = DEFAULT_POLICY
) -> tuple[list[AuthConfig], dict[str, Any]]:
    """The enabled auth plugin configs of a consumer or credential value, validated, and the
    other (non-auth) plugin configs as stored."""
    plugins = value.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise CompileError("invalid plugins configuration")
    auth: list[AuthConfig] = []
    others: dict[str, Any] = {}
    for name, conf in plugins.items():
        cls = plugin_class(name)
        if cls.kind != "auth":
            others[name] = conf
            continue
        if disabled(conf):
            continue
        validated(cls.ConsumerConfig or cls.Config, name, conf, validating, policy)
        auth.append((name, resolved(conf, validating, policy)))
    return auth, others


def group_plugins(id: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A consumer group's plugins; ``CompileError`` when one is an auth plugin (a group
    authenticates nobody: its consumers' own credentials do)."""
    plugins = value.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise CompileError("invalid plugins configuration")
    for name in plugins:
        if plugin_class(name).kind == "auth":
            raise CompileError(
                f"consumer group {id}: {name} is an auth plugin; put it on the consumers"
            )
    return plugins


def compile_consumer(
    username: str,
    value: Mapping[str, Any],
    services: Services,
    *,
    groups: Mapping[str, Mapping[str, Any]] | None = None,
    plugin_metadata: Mapping[str, Any] | None = None,
    validating: bool = False,
) -> tuple[ConsumerEntry, list[AuthConfig]]:
    """The consumer's entry (its non-auth plugins compiled) and its own auth configs.

    With a ``group_id``, the group's plugins (``groups`` maps ids to stored values) come in
    where the consumer configures none of that name, as APISIX merges them; their owner is the
    group, so a group's limit-count counts its consumers together.
    """
    auth, others = auth_configs(value, validating=validating, policy=services.env_policy)
    owners = {name: f"consumer/{username}" for name in others}
    group_id = value.get("group_id")
    if group_id is not None:
        group = (groups or {}).get(str(group_id))
        if group is None:
            raise CompileError(f"failed to fetch consumer group by id [{group_id}]")
        for name, conf in group_plugins(str(group_id), group).items():
            if name not in others and name not in dict(auth):
                others[name], owners[name] = conf, f"consumer_group/{group_id}"
    instances: list[Plugin] = []
    for name, conf in others.items():
        plugin = instantiate(
            name,
            conf,
            services,
            owners[name],
            metadata=plugin_metadata,
            validating=validating,
        )
        if plugin is not None:
            instances.append(plugin)
    entry = ConsumerEntry(
        username=username,
        overrides=frozenset(others),
        labels=value.get("labels") or {},
        group_id=value.get("group_id"),
        chain=PluginChain.of(instances),
    )
    return entry, auth


def unavailable_consumer(
    username: str, value: Mapping[str, Any], services: Services
) -> tuple[ConsumerEntry, list[AuthConfig]]:
    """A stand-in for a consumer that never compiled, with those of its auth configs that do
    compile: requests they authenticate answer 503 (its plugins may have been limits or
    restrictions: never run the route without them, never tell the client its key is wrong)."""
    labels = value.get("labels")
    entry = ConsumerEntry(
        username=username,
        overrides=frozenset({Unavailable.name}),
        labels=labels if isinstance(labels, dict) else {},
        chain=PluginChain.of([Unavailable(services, f"consumer {username}")]),
    )
    auth: list[AuthConfig] = []
    plugins = value.get("plugins")
    for name, conf in plugins.items() if isinstance(plugins, dict) else ():
        try:
            single = {"plugins": {name: conf}}
            auth.extend(auth_configs(single, policy=services.env_policy)[0])
        except CompileError:
            continue  # an unusable credential lets nobody in
    return entry, auth
