"""limit-count ``group``: every limit-count naming one group shares one counter, so it must
have one configuration.

APISIX refuses (400 ``group conf mismatched``) a limit-count whose ``group`` another config
already uses with a different ``count``, ``time_window``, key, policy, ...; it remembers the
first config each process has checked for a group (for an hour, even once its resource is
gone).  llmgate compares with what is stored, wherever a limit-count can sit, leaving out the
resource being written: the only user of a group may change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from llmgate.plugins.limit_count import LimitCountConfig
from llmgate.store import Reader

NAME = "limit-count"
# The kinds whose ``plugins`` may hold a limit-count, and how messages name one.
HOLDERS = {
    "routes": "route",
    "services": "service",
    "plugin_configs": "plugin config",
    "consumers": "consumer",
    "consumer_groups": "consumer group",
    "global_rules": "global rule",
}


def group_conf(conf: object) -> tuple[str, dict[str, Any]] | None:
    """(group, the config with its defaults) of a limit-count config that names a group; None
    when it names none or is not valid (a disabled plugin may be stored invalid)."""
    if not isinstance(conf, Mapping) or not isinstance(conf.get("group"), str):
        return None
    try:
        config = LimitCountConfig.model_validate(conf)
    except ValidationError:
        return None
    assert config.group is not None
    # Every field but ``_meta`` (which runs the plugin, not its counter), defaults included:
    # ``{"key": "remote_addr"}`` and ``{}`` are the same config.
    return config.group, config.model_dump(exclude={"meta"})


async def check_group(reader: Reader, kind: str, id: str, plugins: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` ("group conf mismatched ...") when the limit-count of ``plugins``,
    to be stored as ``kind``/``id``, names a group that another stored config uses with a
    different configuration."""
    mine = group_conf(plugins.get(NAME))
    if mine is None:
        return
    group, wanted = mine
    for holder, noun in HOLDERS.items():
        for item in await reader.list(holder):
            if holder == kind and item.id == id:
                continue
            other_plugins = item.value.get("plugins")
            if not isinstance(other_plugins, dict):
                continue
            theirs = group_conf(other_plugins.get(NAME))
            if theirs is not None and theirs[0] == group and theirs[1] != wanted:
                raise ValueError(
                    f"failed to check the configuration of plugin {NAME} err: group conf "
                    f'mismatched ({noun} [{item.id}] uses group "{group}" with another '
                    "configuration)"
                )
