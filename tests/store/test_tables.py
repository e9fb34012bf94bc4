"""The store's columns hold whatever the admin schema accepts."""

from __future__ import annotations

from typing import Any

from pydantic import StringConstraints

from llmgate.schemas.common import IdStr
from llmgate.schemas.consumer import Username
from llmgate.store.tables import ID_LENGTH, changes, credential_keys, llm_calls, resources, usage


def _max_length(annotation: Any) -> int:
    (constraints,) = (m for m in annotation.__metadata__ if isinstance(m, StringConstraints))
    assert isinstance(constraints.max_length, int)
    return constraints.max_length


def test_ids_and_usernames_fit_their_columns() -> None:
    username, id = _max_length(Username), _max_length(IdStr)
    assert (username, id) == (256, 64)  # APISIX's schema_def: consumer username, id_schema
    assert username + 1 + id == ID_LENGTH  # a credential: "{username}/{id}"
    for column in (resources.c.id, changes.c.id, credential_keys.c.owner):
        assert column.type.length == ID_LENGTH, column  # type: ignore[attr-defined]
    for column in (usage.c.consumer, llm_calls.c.consumer):
        assert column.type.length >= username, column  # type: ignore[attr-defined]
    for column in (usage.c.route, llm_calls.c.route):
        assert column.type.length >= id, column  # type: ignore[attr-defined]
