"""Typed settings, from flags, ``LLMGATE_*`` environment variables or a TOML config file.

Precedence: flag > environment > config file > default.  Every invalid value raises
``SettingsError`` with one line that names the setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from llmgate.ai.pricing import load_prices
from llmgate.errors import SettingsError
from llmgate.http.limits import ClientLimits

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./llmgate.db"
ENV_PREFIX = "LLMGATE_"

Role = Literal["admin", "proxy", "all"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
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


def database_url_from_env() -> str | None:
    return os.environ.get(ENV_PREFIX + "DATABASE_URL") or None


@dataclass(frozen=True, slots=True)
class Settings:
    admin_listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 9180))
    proxy_listen: Listen = field(default_factory=lambda: Listen("0.0.0.0", 9080))
    # The data plane's HTTPS listener (certificates from the ssls, chosen by SNI); None: off.
    proxy_listen_tls: Listen | None = field(default_factory=lambda: Listen("0.0.0.0", 9443))
    metrics_listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 9091))
    database_url: str = DEFAULT_DATABASE_URL
    admin_key: str | None = None
    viewer_key: str | None = None
    redis_url: str | None = None
    reload_interval: float = 0.1
    role: Role = "all"
    workers: int = 1
    metrics_prefix: str = "llmgate_"
    log_level: LogLevel = "warning"
    log_format: LogFormat = "text"
    access_log: bool = True  # the data plane's access log on standard output
    standalone: str | None = None  # a configuration file served instead of the database
    # Client limits, with nginx's names and defaults (see llmgate.http.limits).
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    keepalive_requests: int = 1000
    max_connections: int = 0  # per listener and process; 0: from the open-file limit
    merge_slashes: bool = True
    send_timeout: float = 60.0  # between two writes to a client that does not read
    buffered_bodies_max_bytes: int = 256 * 1024**2  # request bodies in memory, per process
    # APISIX's deployment.admin.enable_admin_cors: CORS headers on admin answers, preflights
    # answered without a key.
    admin_cors: bool = True
    # A static admin UI build (the APISIX Dashboard's dist/) served at /ui/ on the admin
    # listener, as APISIX's enable_admin_ui; None: no UI.
    ui_dir: str | None = None
    # A JSON price table (``ai/pricing.py``): the cost of each LLM call.  Until ai-proxy's
    # plugin_metadata exists this file is where prices live.
    prices: str | None = None
    # Days the per-call usage records (``llm_calls``) are kept; 0 keeps none.
    usage_calls_days: int = 30
    # Where each data-plane process spools its usage before it is shipped to the store
    # (``observability/usage_spool.py``); None: beside a SQLite file (``<file>.spool``), else
    # $XDG_STATE_HOME/llmgate/spool-<digest>; "off": no spool (a crash loses up to 1 s).
    spool_dir: str | None = None
    # Distinct llm_model label values per data-plane process; later models are "other".
    metrics_max_models: int = 100
    # The variables $env:// references may read (names, or prefixes ending in "*"); None:
    # every variable but LLMGATE_*, which are never readable.
    env_allow: tuple[str, ...] | None = None
    # Failed basic-auth password checks per client address and minute before further guesses
    # are refused without hashing (0: no limit).
    auth_failures_per_minute: int = 20
    # proxy-cache caps: the disk zone's bytes (APISIX's disk_size), the memory zone's bytes
    # (APISIX's memory_size), and the entries of each zone.
    cache_max_bytes: int = 1024**3
    cache_memory_max_bytes: int = 50 * 1024**2
    cache_max_entries: int = 400_000
    # Where each node keeps the last-good snapshot of a PostgreSQL store, so a process that
    # starts while the store is unreachable serves it (``runtime/last_good.py``); None:
    # $XDG_STATE_HOME/llmgate (~/.local/state/llmgate); "off": nowhere.
    snapshot_dir: str | None = None

    def client_limits(self) -> ClientLimits:
        return ClientLimits(
            header_timeout=self.client_header_timeout,
            body_timeout=self.client_body_timeout,
            keepalive_timeout=self.keepalive_timeout,
            keepalive_requests=self.keepalive_requests,
            max_connections=self.max_connections,
            merge_slashes=self.merge_slashes,
            send_timeout=self.send_timeout,
            buffered_bodies_max_bytes=self.buffered_bodies_max_bytes,
        )


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
_SIZE = re.compile(r"(\d+)\s*(?:([kmg])i?)?b?", re.IGNORECASE)
_NAMES = {f.name for f in fields(Settings)}


def _number(name: str, value: Any, kind: type[int] | type[float], low: float, high: float) -> Any:
    flag = name.replace("_", "-")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"invalid {flag} {value!r}: not a number") from None
    if not low <= number <= high:
        raise SettingsError(f"invalid {flag} {value!r}: must be {low:g}-{high:g}")
    return number


def _convert(name: str, value: Any) -> Any:
    if name in _TIMEOUTS:
        return _number(name, value, float, *_TIMEOUTS[name])
    if name in _COUNTS:
        if isinstance(value, float) or (isinstance(value, str) and not value.strip().isdigit()):
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
        if len(text) < 8 or any(c.isspace() for c in text):
            raise SettingsError(f"invalid {name}: needs at least 8 characters and no spaces")
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


def _from_file(path: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"invalid config file {path}: {exc}") from None
    unknown = sorted(set(data) - _NAMES)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r} in config file {path}")
    return data


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``flags`` (None values ignored), the environment and a config file.

    The config file is named by the ``config`` flag or ``LLMGATE_CONFIG``.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = flags.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        values.update(_from_file(config_path))
    for name in _NAMES:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value:
            values[name] = env_value
    values.update({k: v for k, v in flags.items() if k in _NAMES})
    settings = Settings(**{name: _convert(name, value) for name, value in values.items()})
    if settings.admin_key and settings.viewer_key == settings.admin_key:
        raise SettingsError("invalid viewer_key: it must differ from the admin key")
    if (
        settings.role != "proxy"
        and not settings.admin_key
        and not settings.admin_listen.is_loopback
    ):
        raise SettingsError(
            f"refusing to expose the admin API on {settings.admin_listen} without an explicit "
            "admin key: set LLMGATE_ADMIN_KEY"
        )
    return settings


class ListenerBusy(Exception):
    """A listener's address cannot be bound (its message names the listener)."""


def check_listeners(settings: Settings) -> None:
    """Bind every listener this role opens, all at once, then let them go: a port another
    process holds (even one sharing it through SO_REUSEPORT, as a second ``llmgate serve``
    would) or two listeners on one address stop start-up before anything is announced.

    ``ListenerBusy`` names the first listener that cannot be bound.
    """
    wanted: list[tuple[str, Listen]] = []
    if settings.role in ("proxy", "all"):
        wanted += [("data plane", settings.proxy_listen), ("metrics", settings.metrics_listen)]
        if settings.proxy_listen_tls is not None:
            wanted.append(("data plane (TLS)", settings.proxy_listen_tls))
    if settings.role in ("admin", "all"):
        wanted.append(("admin API", settings.admin_listen))
    held: list[socket.socket] = []
    try:
        for name, listen in wanted:
            try:
                addresses = socket.getaddrinfo(
                    listen.host or None,
                    listen.port,
                    type=socket.SOCK_STREAM,
                    flags=socket.AI_PASSIVE,
                )
            except socket.gaierror as exc:
                raise ListenerBusy(f"{name} {listen}: {exc.strerror}") from None
            for family, kind, proto, _, address in addresses:
                sock = socket.socket(family, kind, proto)
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:
                    raise ListenerBusy(f"{name} {listen}: {exc.strerror or exc}") from None
    finally:
        for sock in held:
            sock.close()
