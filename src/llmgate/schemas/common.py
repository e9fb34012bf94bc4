"""Field types shared by the admin resource models (APISIX's ``schema_def``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

ID_PATTERN = r"^[a-zA-Z0-9-_.]+$"
HOST_PATTERN = r"^\*$|^\*?[0-9a-zA-Z\-._\[\]:]+$"
HttpMethod = Literal[
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "HEAD",
    "OPTIONS",
    "CONNECT",
    "TRACE",
    "PURGE",
]
HTTP_METHODS: tuple[str, ...] = get_args(HttpMethod)

IdStr = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
IdInt = Annotated[int, Field(ge=1)]
Id = IdStr | IdInt
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Desc = Annotated[str, StringConstraints(max_length=256)]
LabelValue = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^\S+$")]
Host = Annotated[str, StringConstraints(pattern=HOST_PATTERN)]


def _not_a_boolean(value: object) -> object:
    # ``False == 0`` and ``True == 1``: a Literal of integers alone would take booleans.
    if isinstance(value, bool):
        raise ValueError("wrong type: expected integer, got boolean")  # as jsonschema
    return value


# A resource's ``status``, as APISIX's ``{"type": "integer", "enum": [1, 0]}``.
Status = Annotated[Literal[0, 1], BeforeValidator(_not_a_boolean)]


class Resource(BaseModel):
    """Base of every admin resource: strict JSON types, unknown properties refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Id | None = None
    name: Name | None = None
    desc: Desc | None = None
    labels: dict[str, LabelValue] | None = None
    create_time: int | None = None
    update_time: int | None = None


class Timeout(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    connect: Annotated[float, Field(gt=0)]
    send: Annotated[float, Field(gt=0)]
    read: Annotated[float, Field(gt=0)]


PluginsMap = dict[str, Any]
