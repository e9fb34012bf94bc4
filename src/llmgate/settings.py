"""Typed settings, from flags, ``LLMGATE_*`` environment variables or a TOML config file.

Precedence: flag > environment > config file > default.  Every invalid value raises
``SettingsError`` with one line that names the setting (each value is checked and converted in
``setting_values.py``).  ``check_listeners`` binds every listener once before start-up.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from llmgate.errors import SettingsError
from llmgate.http.limits import ClientLimits
from llmgate.setting_values import Listen as Listen
from llmgate.setting_values import convert

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./llmgate.db"
ENV_PREFIX = "LLMGATE_"

Role = Literal["admin", "proxy", "all"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]


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


_NAMES = {f.name for f in fields(Settings)}

# Any key will do on a loopback admin API (as APISIX's admin_key); one reachable from other
# machines needs keys no one guesses in a few tries.
MIN_EXPOSED_KEY_LENGTH = 8


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
    settings = Settings(**{name: convert(name, value) for name, value in values.items()})
    if settings.role == "admin" and settings.workers != 1:
        raise SettingsError(
            f"invalid workers: {settings.workers} data-plane processes, but role admin runs no "
            "data plane (workers applies to roles proxy and all)"
        )
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
    if settings.role != "proxy" and not settings.admin_listen.is_loopback:
        for name, key in (("admin_key", settings.admin_key), ("viewer_key", settings.viewer_key)):
            if key is not None and len(key) < MIN_EXPOSED_KEY_LENGTH:
                raise SettingsError(
                    f"refusing to expose the admin API on {settings.admin_listen} with a key "
                    f"shorter than {MIN_EXPOSED_KEY_LENGTH} characters: {name}"
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
                    # With SO_REUSEADDR two sockets may bind one address; listening tells.
                    sock.listen(1)
                except OSError as exc:
                    raise ListenerBusy(f"{name} {listen}: {exc.strerror or exc}") from None
    finally:
        for sock in held:
            sock.close()
