"""How an operation's handler is put together: its request's dataclass, the part of the
engine it is given, and the function from those to the reply.

``handle`` calls every handler the same way (the engine, the raw request, the caller);
the forms here validate first, hand the function only its part (``accounts_of``...) and
for management turn a ``Refused`` into the ``refused`` reply. Any other exception goes on
up to ``handle``, which answers ``tempfail``: nothing here may turn a failure into a
success. Each form keeps its request's dataclass, so ``SCHEMAS`` is read off ``OPS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ..access import Right
from ..core.errors import DirectoryRefused, Refused
from ._parts import Accounts, Caller, Imports, Keys, Logins, Parts, Policies
from ._replies import Reply, refused, refused_by_directory
from ._schema import Request, parse

__all__ = [
    "Handler",
    "Managed",
    "Op",
    "Plain",
    "accounts_of",
    "imports_of",
    "keys_of",
    "logins_of",
    "manage",
    "plain",
    "policies_of",
]

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R", bound=Request)


class Handler(Protocol):
    """One operation's handler, as ``handle`` calls it."""

    @property
    def request(self) -> type[Request]:
        """The dataclass its request is validated into."""
        ...

    def __call__(self, engine: Parts, request: Mapping[str, object], caller: Caller, /) -> Reply:
        """The reply; raises Malformed, TemporaryFailure or anything unexpected."""
        ...


Op = tuple[Right, Handler]
"""An entry of ``OPS``: the right it takes, and its handler."""


@dataclass(frozen=True)
class Plain(Generic[P, R]):
    """An operation whose function answers for itself (the verify right's and ``stats``)
    and needs the caller: no ``refused`` reply, so a ``Refused`` is unexpected here."""

    request: type[R]
    part: Callable[[Parts], P]
    call: Callable[[P, R, Caller], Reply]

    def __call__(self, engine: Parts, request: Mapping[str, object], caller: Caller) -> Reply:
        values = parse(self.request, request)
        return self.call(self.part(engine), values, caller)


@dataclass(frozen=True)
class Managed(Generic[P, R]):
    """A management operation (the ``manage`` right): ``{"result": "ok", ...}`` with
    what the function returns, done as the peer's user, or ``refused``."""

    request: type[R]
    part: Callable[[Parts], P]
    call: Callable[[P, R, str], Reply]

    def __call__(self, engine: Parts, request: Mapping[str, object], caller: Caller) -> Reply:
        values = parse(self.request, request)
        try:
            return {"result": "ok", **self.call(self.part(engine), values, caller.peer.user)}
        except Refused as exc:
            return refused(exc)
        except DirectoryRefused as exc:
            log.warning("%s from %s: %s", self.request.__name__, caller.peer, exc)
            return refused_by_directory()


def plain(
    request: type[R], part: Callable[[Parts], P], call: Callable[[P, R, Caller], Reply]
) -> Handler:
    """A ``Plain`` handler (a function, so ``R`` is read off the arguments, not ``OPS``)."""
    return Plain(request, part, call)


def manage(
    request: type[R], part: Callable[[Parts], P], call: Callable[[P, R, str], Reply]
) -> Handler:
    """A ``Managed`` handler (a function, so ``R`` is read off the arguments, not ``OPS``)."""
    return Managed(request, part, call)


def logins_of(engine: Parts) -> Logins:
    return engine.logins


def accounts_of(engine: Parts) -> Accounts:
    return engine.accounts


def policies_of(engine: Parts) -> Policies:
    return engine.policies


def keys_of(engine: Parts) -> Keys:
    return engine.keys


def imports_of(engine: Parts) -> Imports:
    return engine.imports
