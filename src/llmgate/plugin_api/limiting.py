"""What limit-count, limit-req and limit-conn share: how a key is built from a request, which
counters a ``policy`` selects, numbers resolved from ``$variables``, and the replies.

Keys follow APISIX: ``key_type`` ``var`` reads one variable (``remote_addr``; a leading ``$`` is
accepted), ``var_combination`` renders a template of ``$variables``, ``constant`` is the key
itself; a key whose variables are all unset or empty falls back to the client address.
Counter keys start with the plugin's name and owner ("route/1#<digest of its config>"), so a
reload of anything else keeps the counts while a change of the plugin's own config resets them.

Errors never surface as a 500: a backend that cannot answer gives 503 ``{"error_msg": "failed to
limit ..."}`` (APISIX: 500), or lets the request through with ``allow_degradation``; a
``$variable`` count that does not resolve to a number is the client's input, hence a 400.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from llmgate.http.context import Reply
from llmgate.http.variables import Template
from llmgate.plugin_api.config import ConfigSection, PluginConfig
from llmgate.runtime.counters import Counters
from llmgate.runtime.redis_counters import RedisTarget
from llmgate.schemas.upstream import split_host_port

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins")

KeyType = Literal["var", "var_combination", "constant"]

# A key longer than this is counted under a digest of it: a client-chosen key (a header) then
# costs the counters a bounded size, however long the header.  So is a key holding bytes that
# are not UTF-8 (aiohttp keeps them as surrogates): Redis and the counter service take text.
MAX_KEY_LENGTH = 128


# -- the shared schema (limit-count, limit-req, limit-conn, ai-rate-limiting) --------------

# A count given as text: ASCII digits (str.isdigit() takes '\u00b2', which int() refuses,
# and int() reads other scripts' digits), few enough to stay a 64-bit integer, as Redis counts.
_RESOLVED_INT = re.compile(r"[0-9]{1,18}")
RejectedCode = Annotated[int, Field(ge=200, le=599)]
RejectedMsg = Annotated[str, Field(min_length=1)]


def _cluster_node(node: str) -> str:
    """``host[:port]`` (or ``[ipv6]:port``): a port in ASCII digits, not ``int()``'s reading."""
    split_host_port(node)
    return node


ClusterNode = Annotated[str, Field(min_length=2, max_length=100), AfterValidator(_cluster_node)]


def var_or_numeral(minimum: int) -> AfterValidator:
    """Check a string given for a number: APISIX resolves its ``$variables`` per request and
    reads the result as an integer, so a string without one must already be a numeral (APISIX
    would accept ``"x"`` here and fail every request)."""

    def check(value: str) -> str:
        if "$" not in value and not (
            _RESOLVED_INT.fullmatch(value) is not None and int(value) >= minimum
        ):
            raise ValueError(f"must be an integer >= {minimum} or reference a $variable")
        return value

    return AfterValidator(check)


# A count, limit or time window: an integer, or a string resolved per request.
DynamicCount = Annotated[int, Field(gt=0)] | Annotated[str, var_or_numeral(1)]


class RedisServers(PluginConfig):
    """The Redis fields of every limiter's config (APISIX's ``utils/redis-schema``); its
    ``policy`` is the subclass's.

    ``policy: redis`` without ``redis_host`` uses the node's default Redis
    (``LLMGATE_REDIS_URL``); the fields set here override the URL's (APISIX requires
    ``redis_host``).
    """

    redis_host: Annotated[str, Field(min_length=2)] | None = None
    redis_port: Annotated[int, Field(ge=1)] = 6379
    redis_username: Annotated[str, Field(min_length=1)] | None = None
    redis_password: str | None = None
    redis_database: Annotated[int, Field(ge=0)] = 0
    redis_timeout: Annotated[int, Field(ge=1)] = 1000
    redis_ssl: bool = False
    redis_ssl_verify: bool = False
    redis_keepalive_timeout: Annotated[int, Field(ge=1000)] = 10000
    redis_keepalive_pool: Annotated[int, Field(ge=1)] = 100
    redis_cluster_nodes: Annotated[list[ClusterNode], Field(min_length=1)] | None = None
    redis_cluster_name: str | None = None
    redis_cluster_ssl: bool = False
    redis_cluster_ssl_verify: bool = False

    @model_validator(mode="after")
    def _policy_needs_servers(self) -> RedisServers:
        policy = str(getattr(self, "policy", "local"))
        required = {
            "redis-cluster": ("redis_cluster_nodes", "redis_cluster_name"),
            "redis-sentinel": ("redis_sentinels", "redis_master_name"),
        }.get(policy, ())
        for field in required:
            if getattr(self, field) is None:
                raise ValueError(f'property "{field}" is required when policy is {policy}')
        return self


class RedisPolicyConfig(RedisServers):
    """Where counters live: this process (``local``), one Redis, or a Redis cluster."""

    policy: Literal["local", "redis", "redis-cluster"] = "local"


class SentinelNode(ConfigSection):
    model_config = ConfigDict(extra="forbid")  # APISIX: additionalProperties = false

    host: Annotated[str, Field(min_length=2)]
    port: Annotated[int, Field(ge=1, le=65535)]


class SentinelPolicyConfig(RedisServers):
    """The policies of limit-count and ai-rate-limiting, which APISIX also lets count in the
    master a set of Redis sentinels names (``redis-sentinel``)."""

    policy: Literal["local", "redis", "redis-cluster", "redis-sentinel"] = "local"
    redis_sentinels: Annotated[list[SentinelNode], Field(min_length=1)] | None = None
    redis_master_name: Annotated[str, Field(min_length=1)] | None = None
    redis_role: Literal["master", "slave"] = "master"
    redis_connect_timeout: Annotated[int, Field(ge=1)] = 1000
    redis_read_timeout: Annotated[int, Field(ge=1)] = 1000
    sentinel_username: Annotated[str, Field(min_length=1)] | None = None
    sentinel_password: str | None = None

    @model_validator(mode="after")
    def _master_only(self) -> SentinelPolicyConfig:
        # APISIX would send INCR to a replica, which refuses writes: every request would fail.
        if self.policy == "redis-sentinel" and self.redis_role != "master":
            raise ValueError('redis_role "slave" cannot count: a replica is read-only')
        return self


class LimitCountRule(ConfigSection):
    """One of several windows counted at once, each with its own key."""

    count: DynamicCount
    time_window: DynamicCount
    key: str
    # Part of the rule's header names (X-<prefix>-RateLimit-Limit): header-name characters only
    # ("" means the rule's position, as when it is left out).
    header_prefix: Annotated[str, Field(pattern=r"^[!-9;-~]*$")] | None = None


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (it holds no surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class LimitKey:
    """A limiter's key, compiled once per snapshot."""

    key_type: KeyType
    text: str
    template: Template

    @classmethod
    def compile(cls, text: str, key_type: KeyType) -> LimitKey:
        name = text[1:] if key_type == "var" and text.startswith("$") else text
        return cls(key_type, name, Template.compile(text))

    def resolve(self, ctx: RequestContext) -> str | None:
        """The key's value for this request (a digest of it when it is longer than
        ``MAX_KEY_LENGTH`` or not valid UTF-8); None when none of its variables has a value."""
        return _bounded(self._value(ctx))

    @property
    def constant(self) -> str | None:
        """The key's value when it is the same for every request (``key_type: constant``)."""
        return _bounded(self.text) if self.key_type == "constant" else None

    def _value(self, ctx: RequestContext) -> str | None:
        if self.key_type == "constant":
            return self.text
        if self.key_type == "var":
            return ctx.var(self.text) or None
        resolved = 0
        out: list[str] = []
        for part in self.template.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.value(ctx.var)
            if value:
                resolved += 1
                out.append(value)
        return "".join(out) if resolved or self.template.is_literal else None

    def render(self, ctx: RequestContext) -> str:
        """The key's value, or the client address when it has none (as APISIX does)."""
        return self.resolve(ctx) or ctx.var("remote_addr") or ""


def _bounded(value: str | None) -> str | None:
    """``value``, or a digest of it when it is longer than ``MAX_KEY_LENGTH`` or not UTF-8."""
    if value is None or (len(value) <= MAX_KEY_LENGTH and _is_utf8(value)):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


class BadLimitValue(ValueError):
    """A count, window, conn or burst given as ``$variables`` did not resolve to an integer."""


def dynamic_int(value: int | str) -> int | Template:
    """A config number: kept as an int, or compiled when it refers to ``$variables``."""
    if isinstance(value, int):
        return value
    template = Template.compile(value)
    return int(value) if template.is_literal else template


def resolve_int(ctx: RequestContext, value: int | Template, name: str, minimum: int = 1) -> int:
    if isinstance(value, int):
        return value
    text = value.render(ctx).strip()
    if _RESOLVED_INT.fullmatch(text) is None:
        shown = text if len(text) <= 64 else f"{text[:64]}..."
        raise BadLimitValue(f"{name} resolved to {shown!r}, not an integer below 10**18")
    number = int(text)
    if number < minimum:
        raise BadLimitValue(f"{name} resolved to {number}, below {minimum}")
    return number


def counters_for(config: RedisPolicyConfig | SentinelPolicyConfig, services: Services) -> Counters:
    """The counters a limiter's ``policy`` selects: the node's own, or a Redis.

    ``policy: redis`` without ``redis_host`` counts in the node's default Redis
    (``services.redis_default``, from ``LLMGATE_REDIS_URL``), with the plugin's own fields
    (those it sets) over the URL's; without a default it does not compile (``ValueError``).
    """
    if config.policy == "local":
        return services.counters
    return services.redis.get(redis_target(config, services.redis_default))


def redis_target(
    config: RedisPolicyConfig | SentinelPolicyConfig, default: RedisTarget | None
) -> RedisTarget:
    """Where a ``policy`` other than ``local`` counts (see ``counters_for``)."""
    timeout = config.redis_timeout / 1000
    if isinstance(config, SentinelPolicyConfig) and config.policy == "redis-sentinel":
        return RedisTarget(
            database=config.redis_database,
            username=config.redis_username,
            password=config.redis_password,
            timeout=config.redis_read_timeout / 1000,
            connect_timeout=config.redis_connect_timeout / 1000,
            pool_size=config.redis_keepalive_pool,
            sentinels=tuple((node.host, node.port) for node in config.redis_sentinels or ()),
            master_name=config.redis_master_name or "",
            sentinel_username=config.sentinel_username,
            sentinel_password=config.sentinel_password,
        )
    if config.policy == "redis-cluster":
        return RedisTarget(
            password=config.redis_password,
            timeout=timeout,
            ssl=config.redis_cluster_ssl,
            ssl_verify=config.redis_cluster_ssl_verify,
            pool_size=config.redis_keepalive_pool,
            cluster_nodes=tuple(config.redis_cluster_nodes or ()),
        )
    own: dict[str, Any] = {"timeout": timeout, "pool_size": config.redis_keepalive_pool}
    given = config.model_fields_set
    for field, name in _OVERRIDES:
        if field in given:
            own[name] = getattr(config, field)
    if config.redis_host is not None:
        return RedisTarget(host=config.redis_host, **own)
    if default is None:
        raise ValueError(
            'property "redis_host" is required when policy is redis and the node has no '
            "default Redis (LLMGATE_REDIS_URL)"
        )
    return dataclasses.replace(default, **own)


# A plugin's fields that override the default Redis's (when set), and the target's names.
_OVERRIDES = (
    ("redis_port", "port"),
    ("redis_database", "database"),
    ("redis_username", "username"),
    ("redis_password", "password"),
    ("redis_ssl", "ssl"),
    ("redis_ssl_verify", "ssl_verify"),
)


def rejection(
    status: int, rejected_msg: str | None, default_msg: str, *, retry_after: float
) -> Reply:
    """The reply to a request over the limit: ``{"error_msg": rejected_msg}``, with
    ``Retry-After``: ``retry_after`` seconds (when the limit lets a request through again, as
    far as the limiter knows), rounded up, at least 1.

    APISIX sends nginx's HTML error page when no ``rejected_msg`` is set, and no Retry-After;
    llmgate answers JSON with ``default_msg``, as every error llmgate produces is JSON, and
    tells clients (the OpenAI SDKs honour it) when to retry.
    """
    seconds = max(math.ceil(retry_after), 1)
    return Reply.json(
        status, {"error_msg": rejected_msg or default_msg}, {"Retry-After": str(seconds)}
    )


def unavailable(plugin: str, owner: str, exc: Exception) -> Reply:
    """The reply when the counters cannot be reached and degradation is not allowed:
    APISIX's message ("failed to limit count"), with 503 rather than its 500."""
    log.warning("%s of %s cannot count: %s", plugin, owner.partition("#")[0], exc)
    return Reply.error(503, "failed to " + plugin.replace("-", " "))


def bad_value(plugin: str, exc: BadLimitValue) -> Reply:
    return Reply.error(400, f"{plugin}: {exc}")
