"""LLM protocol helpers: token usage, SSE framing, request classification."""
