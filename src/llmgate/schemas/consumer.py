"""The consumer and credential resources."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from llmgate.schemas.common import Id, PluginsMap, Resource

Username = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[a-zA-Z0-9_\-]+$")
]

# APISIX's credential schema: one plugin per credential (``maxProperties: 1``).
CredentialPlugins = Annotated[PluginsMap, Field(max_length=1)]


class Consumer(Resource):
    """A consumer stored under ``/apisix/consumers/{username}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: None = None  # consumers have no name in APISIX
    username: Username
    group_id: Id | None = None
    plugins: PluginsMap | None = None


class Credential(Resource):
    """A credential stored under ``/apisix/consumers/{username}/credentials/{id}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    plugins: CredentialPlugins | None = None
