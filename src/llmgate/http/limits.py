"""What a client may cost a listener: nginx's client limits, with nginx's defaults.

Built once from the settings (``Settings.client_limits``) and handed to the listeners
(``llmgate.http.protocol``) and the data plane's handler.  ``ConnectionBudget`` is a listener's
connection cap at work: a ``Slot`` per open connection.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

# Kept free under the open-file limit for everything that is not a client connection: upstream
# connections, the store, Redis, log files, the listeners themselves.
_RESERVED_FDS = 256
# Each proxied client connection may hold an upstream connection too.
_FDS_PER_CLIENT = 2


@dataclass(frozen=True, slots=True)
class ClientLimits:
    header_timeout: float = 60.0  # the whole request head, from its first byte (or the accept)
    body_timeout: float = 60.0  # between two reads of the request body
    keepalive_timeout: float = 75.0  # idle between two requests of one connection
    keepalive_requests: int = 1000  # requests on one connection before it is closed
    max_connections: int = 0  # client connections per listener and process; 0: from the fd limit
    merge_slashes: bool = True  # "//" in a path is "/" (nginx's merge_slashes)
    send_timeout: float = 60.0  # between two writes of a response the client does not read
    # Request bodies held in memory at once, by every request of the process (503 past it).
    buffered_bodies_max_bytes: int = 256 * 1024 * 1024

    def connection_cap(self) -> int:
        """``max_connections``, or when 0 what the open-file limit leaves room for."""
        if self.max_connections:
            return self.max_connections
        return connections_for(open_file_limit())


def open_file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connections_for(fd_limit: int) -> int:
    """Client connections that fit in ``fd_limit`` open files, with their upstream connections
    and a reserve for the rest of the process (at least 64)."""
    return max((fd_limit - _RESERVED_FDS) // _FDS_PER_CLIENT, 64)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (nginx's ``worker_rlimit_nofile``, done
    by default); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return open_file_limit()
    return open_file_limit()


class ConnectionBudget:
    """Client connections a listener holds open at once, at most ``cap`` (nginx's
    ``worker_connections``).  ``take`` gives a connection its ``Slot``, or None (and counts it
    in ``refused``) when all are taken."""

    __slots__ = ("cap", "open", "refused")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0  # connections holding a slot
        self.refused = 0  # connections turned away because ``cap`` were open

    def take(self) -> Slot | None:
        if self.open >= self.cap:
            self.refused += 1
            return None
        self.open += 1
        return Slot(self)


class Slot:
    """One connection's place in a ``ConnectionBudget``, given back once, whoever holds it when
    the connection ends (the listener that accepted it, or the protocol that took it over)."""

    __slots__ = ("_budget",)

    def __init__(self, budget: ConnectionBudget) -> None:
        self._budget: ConnectionBudget | None = budget

    def give_back(self) -> None:
        budget = self._budget
        if budget is not None:
            self._budget = None
            budget.open -= 1
