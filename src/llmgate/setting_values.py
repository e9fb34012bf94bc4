"""One setting's value, checked and converted from its flag, environment or TOML form.

``convert(name, value)`` turns what ``load_settings`` gathered for a setting into its typed
value (``Listen`` for listen addresses, byte sizes, ranged numbers, URLs, keys, ...) or raises
``SettingsError`` with one line that names the setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from llmgate.ai.pricing import load_prices
from llmgate.errors import SettingsError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

# What may start a Prometheus metric name (the prefix may also be empty).
_METRICS_PREFIX = re.compile(r"(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?")
# An env_allow entry: a variable name, or a prefix followed by "*".
_ENV_ALLOW_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_listen(name: str, text: str) -> Listen:
    """``"127.0.0.1:9180"`` / ``"[::1]:9180"`` / ``":9180"`` -> Listen."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise SettingsError(f"invalid {name} {text!r}: expected host:port with a port 1-65535")
    return Listen(host or "0.0.0.0", int(port))


_LISTENS = {"admin_listen", "proxy_listen", "metrics_listen"}
_FLOATS = {"reload_interval"}
_INTS = {"workers"}
# name -> (lowest, highest)
_TIMEOUTS = {
    "client_header_timeout": (0.1, 3600.0),
    "client_body_timeout": (0.1, 3600.0),
    "keepalive_timeout": (0.1, 3600.0),
    "send_timeout": (0.1, 3600.0),
}
_COUNTS = {
    "keepalive_requests": (1, 10**9),
    "max_connections": (0, 10**7),
    "auth_failures_per_minute": (0, 10**9),
    "cache_max_entries": (1, 10**9),
}
_BOOLS = {"merge_slashes", "admin_cors", "access_log"}
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}
_SIZES = {"cache_max_bytes", "cache_memory_max_bytes", "buffered_bodies_max_bytes"}
# Every setting that is a number: TOML's `true` is not one (int(True) is 1).
_NUMBERS = {
    *_FLOATS,
    *_INTS,
    *_TIMEOUTS,
    *_COUNTS,
    *_SIZES,
    "usage_calls_days",
    "metrics_max_models",
}
_SIZE = re.compile(r"(\d+)\s*(?:([kmg])i?)?b?", re.IGNORECASE)


def _number(name: str, value: Any, kind: type[int] | type[float], low: float, high: float) -> Any:
    flag = name.replace("_", "-")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"invalid {flag} {value!r}: not a number") from None
    if not low <= number <= high:
        bounds = f"{low:g}-{high:g}" if kind is float else f"{int(low)}-{int(high)}"
        raise SettingsError(f"invalid {flag} {value!r}: must be {bounds}")
    return number


def convert(name: str, value: Any) -> Any:
    """``value`` of the setting ``name`` as the Settings field holds it (a name this module
    does not check is returned as it is)."""
    if isinstance(value, bool) and name in _NUMBERS:  # TOML's true is not 1
        raise SettingsError(f"invalid {name.replace('_', '-')} {value!r}: not a number")
    if name in _TIMEOUTS:
        return _number(name, value, float, *_TIMEOUTS[name])
    if name in _COUNTS:
        text = value.strip().removeprefix("-") if isinstance(value, str) else ""
        if isinstance(value, float) or (isinstance(value, str) and not text.isdigit()):
            raise SettingsError(f"invalid {name.replace('_', '-')} {value!r}: not an integer")
        return _number(name, value, int, *_COUNTS[name])
    if name in _BOOLS:
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in _TRUE | _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        raise SettingsError(f"invalid {name.replace('_', '-')} {value!r}: expected on or off")
    if name in _LISTENS:
        return parse_listen(name.replace("_", "-"), str(value))
    if name == "proxy_listen_tls":
        if str(value).strip().lower() in ("off", "none"):
            return None
        return parse_listen("proxy-listen-tls", str(value))
    if name in _FLOATS:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SettingsError(
                f"invalid {name.replace('_', '-')} {value!r}: not a number"
            ) from None
        if not 0.01 <= number <= 60:
            raise SettingsError(f"invalid {name.replace('_', '-')} {value!r}: must be 0.01-60 s")
        return number
    if name in _INTS:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"invalid {name} {value!r}: not an integer") from None
        if not 1 <= number <= 256:
            raise SettingsError(f"invalid {name} {value!r}: must be 1-256")
        return number
    if name in _SIZES:
        return parse_size(name, value)
    if name == "role":
        if value not in ("admin", "proxy", "all"):
            raise SettingsError(f"invalid role {value!r}: expected admin, proxy or all")
        return value
    if name in ("admin_key", "viewer_key"):
        text = str(value)
        if not text or any(c.isspace() for c in text):
            raise SettingsError(f"invalid {name}: needs at least one character and no spaces")
        return text
    if name == "database_url":
        try:
            url = make_url(str(value))
        except ArgumentError:
            raise SettingsError(f"invalid database-url {value!r}") from None
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise SettingsError(
                f"invalid database-url {value!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return str(value)
    if name == "prices":
        try:
            load_prices(str(value))
        except ValueError as exc:
            raise SettingsError(f"invalid prices: {exc}") from None
        return str(value)
    if name == "spool_dir":
        text = str(value).strip()
        if not text:
            raise SettingsError("invalid spool-dir: expected a directory, or off")
        return text
    if name == "usage_calls_days":
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"invalid usage_calls_days {value!r}: not an integer") from None
        if not 0 <= number <= 3650:
            raise SettingsError(f"invalid usage_calls_days {value!r}: must be 0-3650")
        return number
    if name == "metrics_prefix":
        if not isinstance(value, str) or _METRICS_PREFIX.fullmatch(value) is None:
            raise SettingsError(
                f"invalid metrics_prefix {value!r}: letters, digits, '_' and ':' only, "
                "not starting with a digit"
            )
        return value
    if name == "log_level" and value not in LOG_LEVELS:
        raise SettingsError(f"invalid log-level {value!r}: expected debug, info, warning or error")
    if name == "log_format" and value not in LOG_FORMATS:
        raise SettingsError(f"invalid log-format {value!r}: expected text or json")
    if name == "ui_dir":
        if not os.path.isdir(str(value)):
            raise SettingsError(f"invalid ui-dir {value!r}: not a directory")
        if not os.path.isfile(os.path.join(str(value), "index.html")):
            raise SettingsError(f"invalid ui-dir {value!r}: no index.html in it")
        return str(value)
    if name == "snapshot_dir":
        text = str(value).strip()
        if not text:
            raise SettingsError("invalid snapshot-dir: expected a directory, or off")
        return text
    if name == "standalone" and not str(value):
        raise SettingsError("invalid standalone: expected the path of a configuration file")
    if name == "metrics_max_models":
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"invalid metrics_max_models {value!r}: not an integer") from None
        if not 1 <= number <= 100_000:
            raise SettingsError(f"invalid metrics_max_models {value!r}: must be 1-100000")
        return number
    if name == "env_allow":
        return _env_allow(value)
    if name == "redis_url":
        return _redis_url(str(value))
    return value


def _redis_url(value: str) -> str:
    """A URL ``target_from_url`` reads; the error never shows a password it holds."""
    from llmgate.runtime.redis_counters import target_from_url

    try:
        target_from_url(value)
    except ValueError as exc:
        scheme, at, place = value.rpartition("@")
        shown = f"{scheme.partition('://')[0]}://***@{place}" if at else value
        raise SettingsError(
            f"invalid redis-url {shown!r}: {exc}; expected redis://host:port/db"
        ) from None
    return value


def _env_allow(value: Any) -> tuple[str, ...]:
    """``"OPENAI_API_KEY,AZURE_*"`` (or a list in the config file) -> the entries."""
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, list | tuple) or not all(isinstance(e, str) for e in entries):
        raise SettingsError(f"invalid env_allow {value!r}: expected comma-separated names")
    cleaned = tuple(entry.strip() for entry in entries if entry.strip())
    for entry in cleaned:
        if _ENV_ALLOW_ENTRY.fullmatch(entry) is None:
            raise SettingsError(
                f"invalid env_allow entry {entry!r}: a variable name, or a prefix ending in *"
            )
        if entry.startswith("LLMGATE_"):
            raise SettingsError(
                f"invalid env_allow entry {entry!r}: LLMGATE_ variables are never readable"
            )
    return cleaned


def parse_size(name: str, value: Any) -> int:
    """A byte size: ``1073741824``, ``1G``, ``512m``, ``64KiB`` (binary multiples, as nginx)."""
    match = _SIZE.fullmatch(str(value).strip())
    if isinstance(value, bool) or match is None:
        raise SettingsError(
            f"invalid {name.replace('_', '-')} {value!r}: expected bytes, e.g. 1073741824 or 1G"
        )
    number: int = int(match.group(1)) * 1024 ** " kmg".index((match.group(2) or " ").lower())
    if number < 1024:
        raise SettingsError(f"invalid {name.replace('_', '-')} {value!r}: at least 1024 bytes")
    return number
