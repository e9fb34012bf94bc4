"""Plugins: one module per plugin, listed explicitly in ``REGISTRY``."""

from __future__ import annotations

from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.ai_prompt_decorator import AIPromptDecorator
from llmgate.plugins.ai_prompt_guard import AIPromptGuard
from llmgate.plugins.ai_prompt_template import AIPromptTemplate
from llmgate.plugins.ai_proxy import AIProxy
from llmgate.plugins.ai_proxy_multi import AIProxyMulti
from llmgate.plugins.ai_rate_limiting import AIRateLimiting
from llmgate.plugins.basic_auth import BasicAuth
from llmgate.plugins.consumer_restriction import ConsumerRestriction
from llmgate.plugins.cors import Cors
from llmgate.plugins.file_logger import FileLogger
from llmgate.plugins.http_logger import HttpLogger
from llmgate.plugins.key_auth import KeyAuth
from llmgate.plugins.limit_conn import LimitConn
from llmgate.plugins.limit_count import LimitCount
from llmgate.plugins.limit_req import LimitReq
from llmgate.plugins.openai_compatible import OpenAICompatible
from llmgate.plugins.prometheus import Prometheus
from llmgate.plugins.proxy_cache import ProxyCache
from llmgate.plugins.proxy_rewrite import ProxyRewrite
from llmgate.plugins.request_id import RequestId
from llmgate.plugins.response_rewrite import ResponseRewrite

REGISTRY: dict[str, type[Plugin]] = {
    # auth
    "basic-auth": BasicAuth,
    "key-auth": KeyAuth,
    "consumer-restriction": ConsumerRestriction,
    # traffic
    "limit-count": LimitCount,
    "limit-req": LimitReq,
    "limit-conn": LimitConn,
    # request and response
    "proxy-rewrite": ProxyRewrite,
    "proxy-cache": ProxyCache,
    "cors": Cors,
    "request-id": RequestId,
    "response-rewrite": ResponseRewrite,
    # observability
    "prometheus": Prometheus,
    "file-logger": FileLogger,
    "http-logger": HttpLogger,
    # AI
    "ai-proxy": AIProxy,
    "ai-proxy-multi": AIProxyMulti,
    "ai-prompt-decorator": AIPromptDecorator,
    "ai-prompt-template": AIPromptTemplate,
    "ai-prompt-guard": AIPromptGuard,
    "ai-rate-limiting": AIRateLimiting,
    "openai-compatible": OpenAICompatible,
}

__all__ = ["REGISTRY", "Plugin"]
