"""What a snapshot was assembled from (``Parts``, ``Context``), kept so the next revision can
compile only what its writes touched, and the snapshot a compilation ends with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmgate.http.tls import SniIndex
from llmgate.plugin_api.config import ConfigSection
from llmgate.routing import RouteEntry, Router
from llmgate.runtime.assembly import Assembly
from llmgate.runtime.consumers import AuthConfig
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import (
    CompiledRoute,
    ConsumerEntry,
    CredentialEntry,
    PluginChain,
    Snapshot,
)


@dataclass(slots=True)
class Parts:
    """What a snapshot was assembled from, kept so the next revision can change only what
    its writes touched (``update_snapshot``).  Every mapping is in creation order."""

    routes: dict[str, RouteEntry[CompiledRoute] | None]  # None: disabled or nothing to serve
    own_auth: dict[str, list[CredentialEntry]]  # a consumer's own auth configs
    credential_auth: dict[str, list[AuthConfig]]  # a credential's ("user/id"), unbound
    found: dict[str, list[CredentialEntry]]  # owner -> every auth entry it authenticates
    pool_refs: Counter[str] = field(default_factory=Counter)  # units holding each pool
    index: dict[str, Any] = field(default_factory=dict)  # each auth plugin's index
    context: Context | None = None  # what routes and consumers compile against


@dataclass(slots=True)
class Context:
    """The values routes and consumers compile against (by id), and what every route shares.
    ``update_steps`` rebuilds ``upstreams`` and ``plugin_configs`` from the rows; a change to
    any other of these kinds compiles everything."""

    upstreams: dict[str, Any]
    plugin_configs: dict[str, Any]
    service_values: dict[str, Any]
    metadata: dict[str, ConfigSection]
    groups: dict[str, Any]
    global_chain: PluginChain
    certificates: SniIndex
    ssls: dict[str, Any] = field(default_factory=dict)  # by id: upstreams' client certificates


def snapshot_of(
    revision: int,
    router: Router[CompiledRoute],
    consumers: Mapping[str, ConsumerEntry],
    parts: Parts,
    services: Services,
    assembly: Assembly,
    context: Context,
) -> Snapshot:
    """The snapshot a whole or an incremental compilation ends with."""
    return Snapshot(
        revision,
        router,
        consumers,
        parts.index,
        services,
        problems=assembly.problems,
        units=assembly.units,
        global_chain=context.global_chain,
        certificates=context.certificates,
        parts=parts,
    )
