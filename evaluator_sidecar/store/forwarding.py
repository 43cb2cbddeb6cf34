"""Typed forwarding for a facade: its parts held in typed slots, their methods re-exposed.

``PKGClient`` composes the DAOs and offers their methods under the same names, so
``client.store_snapshot(...)`` and ``client.snapshots.store_snapshot(...)`` are one
call. Instead of a hand-written forwarder per method (each copying the DAO's
signature), the facade declares::

    class PKGClient:
        snapshots = Part(PKGSnapshotsDAO)
        store_snapshot = snapshots.forward(PKGSnapshotsDAO.store_snapshot)

The ``ParamSpec`` of ``forward`` carries the DAO method's parameters (names, kinds,
which have defaults) and return type, so mypy --strict and IDEs check a call on the
facade exactly as one on the DAO, and a signature is written once, in the DAO.
At run time the forwarder looks the method up on the part the instance holds (as
the hand-written ``self.snapshots.store_snapshot(...)`` did), so a method replaced
on a DAO instance is the one called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

__all__ = ["Forward", "Part"]

D = TypeVar("D")
P = ParamSpec("P")
R = TypeVar("R")


class Part(Generic[D]):
    """A class attribute naming one part of a facade; each instance holds its own ``D``.

    A data descriptor (rather than a plain attribute) so that the forwarders declared
    from it know, with no attribute name spelled as a string, where the part lives,
    and so that mypy sees ``client.snapshots`` as a ``D``.
    """

    def __init__(self, kind: type[D]) -> None:
        self.kind = kind
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> D: ...

    def __get__(self, obj: object | None, owner: type[Any] | None = None) -> Self | D:
        if obj is None:
            return self
        try:
            part: D = obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(
                f"{type(obj).__name__}.{self.name} ({self.kind.__name__}) is not set yet: "
                "assign it in __init__"
            ) from None
        return part

    def __set__(self, obj: object, value: D) -> None:
        obj.__dict__[self.name] = value

    def forward(self, method: Callable[Concatenate[D, P], R]) -> Forward[P, R]:
        """A facade method that calls ``method`` of this part, typed as ``method`` is."""
        return Forward(self, method)


class Forward(Generic[P, R]):
    """A facade method calling the same-named method of one part (see :meth:`Part.forward`)."""

    def __init__(self, part: Part[Any], method: Callable[..., R]) -> None:
        self.part = part
        self.method = method
        self.__name__ = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        # One name for one call: an alias under another name would make the facade and
        # the part disagree on what a method is called.
        if name != self.__name__:
            raise TypeError(
                f"{owner.__name__}.{name} forwards {self.method.__qualname__}: "
                f"name it {self.__name__}"
            )

    def __repr__(self) -> str:
        return f"<forward to .{self.part.name}.{self.__name__}>"

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Callable[P, R]: ...

    def __get__(self, obj: object | None, owner: type[Any] | None = None) -> Self | Callable[P, R]:
        if obj is None:
            return self
        # The bound method of the part this instance holds: the forwarder adds no frame.
        return cast("Callable[P, R]", getattr(self.part.__get__(obj), self.__name__))
