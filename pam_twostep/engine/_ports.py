"""What the engine needs of the directory, and nothing more.

The engine's parts are typed against this Protocol rather than ``directory.Directory``
(as they are against ``audit.AuditSink``): it lists every directory operation they may
perform, none of which takes a filter, so LDAP syntax cannot creep back out of
``directory``, and a test can hand them a stand-in without ldap3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..core.account import RawEntry
from ..core.changes import Modify
from ..core.revocation import Ended, Kick, RevocationCause
from ..core.stale_records import StaleClient

__all__ = ["DirectoryPort", "SessionEnder", "StaleNotifier"]


class DirectoryPort(Protocol):
    def find_account(self, username: str, attributes: Sequence[str]) -> RawEntry | None: ...

    def find_by(
        self, attribute: str, value: str, attributes: Sequence[str], *, limit: int = 2
    ) -> list[RawEntry]: ...

    def read(self, dn: str, attributes: Sequence[str]) -> RawEntry | None: ...

    def entries_of_class(
        self, base: str, object_class: str, attributes: Sequence[str], *, limit: int = 1000
    ) -> list[RawEntry]: ...

    def names_of_class(self, base: str, object_class: str) -> list[str]: ...

    def modify(self, dn: str, modify: Modify) -> None: ...

    def add_values_if_missing(self, dn: str, attribute: str, value: str) -> None: ...

    def add_entry(
        self, dn: str, object_classes: Sequence[str], attributes: dict[str, list[str]]
    ) -> None: ...

    def check_password(self, dn: str, password: str) -> bool: ...

    def change_password(self, dn: str, old: str, new: str) -> bool: ...


class SessionEnder(Protocol):
    """The mail servers, as far as ending open sessions goes (``mailsessions``)."""

    def end(self, kick: Kick, cause: RevocationCause, actor: str | None = None) -> Ended: ...

    def end_later(self, kick: Kick, cause: RevocationCause) -> None: ...


class StaleNotifier(Protocol):
    """Who tells owners of stale clients (``stalenotice``)."""

    @property
    def per_day(self) -> int: ...

    def tell(self, username: str, client: StaleClient) -> None: ...
