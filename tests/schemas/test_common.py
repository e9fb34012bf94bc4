"""Field types shared by the resources (schemas/common.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llmgate.admin.resources import RESOURCES

CERT, KEY = "c" * 128, "k" * 64
BODIES = {
    "routes": {"uri": "/a", "plugins": {}},
    "ssls": {"cert": CERT, "key": KEY, "sni": "a.test"},
}


@pytest.mark.parametrize("resource", sorted(BODIES))
@pytest.mark.parametrize("status", [False, True, 2, -1, "1"])
def test_status_is_the_integer_0_or_1_not_a_boolean(resource: str, status: Any) -> None:
    """APISIX's ``status`` is ``{"type": "integer", "enum": [1, 0]}``: ``false`` is refused.
    (``False == 0`` in Python, so a Literal[0, 1] alone let it through, stored as ``false``.)"""
    model = RESOURCES[resource].model
    with pytest.raises(ValidationError, match="status"):
        model.model_validate({**BODIES[resource], "status": status})
    for good in (0, 1):
        assert model.model_validate({**BODIES[resource], "status": good}).status == good
