"""Pure request routing: ``(method, host, path, variables) -> RouteEntry | None``, compiled once
per snapshot.

Independent of the rest of llmgate: the runtime compiler turns route rows into
:class:`RouteEntry` objects (carrying whatever it needs as ``payload``) and builds a
:class:`Router`; the proxy calls :meth:`Router.match` per request.
"""

from llmgate.routing.hosts import HostSet, normalize_host
from llmgate.routing.matcher import Lookup, RouteEntry, Router

__all__ = ["HostSet", "Lookup", "RouteEntry", "Router", "normalize_host"]
