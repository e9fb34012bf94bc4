"""Stored plugin configs -> plugin instances: the one way a config becomes runnable.

The data plane's compiler and the admin API's validation both come here, so a write is refused
(400) exactly when the data plane could not run it, and a stored config that stops compiling
(an ``$env://`` value that changed, a row written by an older version) is caught the same way.

``validating=True`` is the admin's mode: a ``$env://`` reference whose variable is not set in
the admin's own environment is left as written (the data plane may have it).  On the data plane
such a reference is a ``CompileError``: the resource keeps its last good version or answers 503
(``runtime/compiler.py``), never runs with an empty value in its place.  Which variables a
reference may read is the ``EnvPolicy`` of ``Services`` (``schemas/envrefs.py``): never
``LLMGATE_*``, only the ``env_allow`` names when set (another name counts as unset).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from llmgate.http.context import Reply, ResponseHead
from llmgate.plugin_api.config import ConfigSection, PluginConfig
from llmgate.plugin_api.plugin import Plugin, with_meta
from llmgate.plugins import REGISTRY
from llmgate.plugins.request_id import llm_request_id
from llmgate.runtime import envrefs
from llmgate.runtime.services import Services
from llmgate.schemas.envrefs import EnvPolicy, names
from llmgate.schemas.messages import describe


class CompileError(ValueError):
    """A stored config that cannot be turned into runtime objects.  The message names the
    field (APISIX's wording where APISIX has one) and never holds a resolved secret."""


def fingerprint(conf: Any) -> str:
    """A short digest of a config as stored (env references unresolved: no secret in keys)."""
    return hashlib.sha1(orjson.dumps(conf, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def disabled(conf: Any) -> bool:
    meta = conf.get("_meta") if isinstance(conf, dict) else None
    return isinstance(meta, dict) and meta.get("disable") is True


def resolved(
    conf: Any, validating: bool = False, policy: EnvPolicy = envrefs.DEFAULT_POLICY
) -> Any:
    """``conf`` with its ``$env://`` references resolved (see the module's docstring)."""
    if validating and envrefs.missing(conf, policy=policy):
        return conf
    return envrefs.resolve(conf, policy=policy)


def redact(message: str, conf: Any) -> str:
    """``message`` without the values of the environment variables ``conf`` refers to."""
    for name in set(names(conf)):
        value = os.environ.get(name)
        if value:
            message = message.replace(value, "***")
    return message


def plugin_class(name: str) -> type[Plugin]:
    cls = REGISTRY.get(name)
    if cls is None:
        raise CompileError(f"unknown plugin [{name}]")
    return cls


def validated(
    model: type[PluginConfig],
    name: str,
    conf: Any,
    validating: bool,
    policy: EnvPolicy = envrefs.DEFAULT_POLICY,
) -> PluginConfig:
    """``conf`` (env resolved) validated by ``model``, or a ``CompileError``."""
    if not isinstance(conf, dict):
        shown = orjson.dumps(conf).decode()
        raise CompileError(f"invalid plugin conf {shown} for plugin [{name}]")
    if not validating:
        unset = envrefs.missing(conf, policy=policy)
        if unset:
            raise CompileError(
                f"failed to check the configuration of plugin {name} err: environment "
                f"variable {', '.join(dict.fromkeys(unset))} is not set (or not allowed)"
            )
    try:
        return model.model_validate(resolved(conf, validating, policy))
    except ValidationError as exc:
        message = f"failed to check the configuration of plugin {name} err: {describe(exc)}"
        raise CompileError(redact(message, conf)) from None


def metadata_of(name: str, value: Any) -> ConfigSection:
    """The plugin metadata of ``name`` (a stored ``plugin_metadata`` value) validated by the
    plugin's ``MetadataConfig``, or a ``CompileError``."""
    cls = plugin_class(name)
    if cls.MetadataConfig is None:
        raise CompileError(f"plugin {name} has no plugin metadata in llmgate")
    if not isinstance(value, dict):
        raise CompileError("invalid configuration: expected a JSON object")
    conf = {k: v for k, v in value.items() if k not in _METADATA_STAMPS}
    try:
        return cls.MetadataConfig.model_validate(conf)
    except ValidationError as exc:
        raise CompileError(f"invalid configuration: {describe(exc)}") from None


# What the admin API adds to a stored plugin_metadata value.
_METADATA_STAMPS = ("id", "create_time", "update_time")


def instantiate(
    name: str,
    conf: Any,
    services: Services,
    owner: str,
    *,
    metadata: Mapping[str, ConfigSection] | None = None,
    validating: bool = False,
) -> Plugin | None:
    """A plugin instance for ``conf`` on ``owner`` ("route/1"), None when it is disabled.

    Everything the plugin compiles (regexes, expressions, templates, targets) is compiled here;
    a failure is a ``CompileError``.  ``metadata`` maps plugin names to their validated plugin
    metadata: the instance reads its own (``Plugin.use_metadata``).
    """
    cls = plugin_class(name)
    if disabled(conf):
        return None
    config = validated(cls.Config, name, conf, validating, services.env_policy)
    try:
        plugin = cls(config, services, f"{owner}#{fingerprint(conf)}")
        own = metadata.get(name) if metadata is not None else None
        if own is not None:
            plugin.use_metadata(own)
        return with_meta(plugin)
    except CompileError:
        raise
    except Exception as exc:  # a plugin's own compilation: a regex, a URL, a template...
        message = f"failed to check the configuration of plugin {name} err: {exc}"
        raise CompileError(redact(message, conf)) from None


class Unavailable(Plugin):
    """Stands in for a resource that never compiled: answers 503 before anything else runs, so
    its traffic goes nowhere else (not a registry plugin; no admin can configure it)."""

    name = "llmgate-unavailable"
    priority = 1_000_000
    Config = PluginConfig

    def __init__(self, services: Services, what: str, plugins: object = None) -> None:
        """``plugins``: the resource's stored ``plugins`` object; when it names a plugin that
        makes an LLM route (ai-proxy, ...), the 503 is that route's kind of error: OpenAI's
        shape, with ``X-Request-Id``."""
        super().__init__(PluginConfig(), services, what)
        self._reply = Reply.error(503, f"{what} is unavailable: its configuration does not compile")
        self.llm_route = isinstance(plugins, dict) and any(
            getattr(REGISTRY.get(name), "llm_route", False) for name in plugins
        )

    async def rewrite(self, ctx: Any) -> Reply | None:
        return self._reply

    def header_filter(self, ctx: Any, head: ResponseHead) -> None:
        if self.llm_route:
            llm_request_id(ctx, head)
