"""Per-request state by typed key: ``ctx.state[KEY]`` (``llmgate.http.context``).

A request's context carries the facts every layer may read as its own fields; anything else
(a plugin's per-request state, the snapshot and plugin chain the handler runs it with) is in
``ctx.state``, under a ``StateKey[T]`` owned by the module that writes it: the context never
names a type from above its layer, and a reader gets the type the key declares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

T = TypeVar("T")
D = TypeVar("D")


class StateKey(Generic[T]):
    """A key of ``ctx.state`` with the type of its value.  Keys compare by identity: a module
    (or a plugin instance, for per-instance state) creates its key once and keeps it; two keys
    with the same name are still different keys.  The name is for reading and debugging."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StateKey({self.name!r})"


if TYPE_CHECKING:

    class State:
        """Per-request state by typed key: ``state[KEY]``, ``state.get(KEY)``, ``KEY in state``,
        ``state[KEY] = value``, ``state.pop(KEY, None)``, ``del state[KEY]``.

        What the type checker sees; at run time ``State`` is a plain ``dict`` subclass (below),
        so each access is one C call on the request path."""

        def __getitem__(self, key: StateKey[T]) -> T: ...

        def __setitem__(self, key: StateKey[T], value: T) -> None: ...

        def __delitem__(self, key: StateKey[Any]) -> None: ...

        def __contains__(self, key: StateKey[Any]) -> bool: ...

        @overload
        def get(self, key: StateKey[T]) -> T | None: ...

        @overload
        def get(self, key: StateKey[T], default: D) -> T | D: ...

        def get(self, key: StateKey[T], default: object = None) -> object: ...

        @overload
        def pop(self, key: StateKey[T]) -> T: ...

        @overload
        def pop(self, key: StateKey[T], default: D) -> T | D: ...

        def pop(self, key: StateKey[T], default: object = None) -> object: ...

else:

    class State(dict):
        """Per-request state by typed key (see the typed declaration above)."""

        __slots__ = ()
