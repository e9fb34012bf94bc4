"""llmgate: an APISIX-compatible API gateway for LLM APIs."""

__version__ = "0.1.0"
