"""What a handler is given: the part of the engine its operation needs, and the caller.

Each part is a ``Protocol`` listing only the methods the handlers call, so a handler
depends on what it uses and not on the engine's classes: a verify-only handler holds
``Logins`` and cannot reach an account change, and the engine may rearrange its classes
behind ``engine.logins``, ``engine.accounts``, ``engine.policies``, ``engine.keys`` and
``engine.imports`` without the handlers noticing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple, Protocol

from ..access import Peer, Right
from ..continuation import Continuations, PasswordProof
from ..core.candidate import Candidate
from ..core.decision import Attempt, Decision
from ..core.enrollment import EnrollmentStart
from ..core.management import AccountStatus, NewPasscode
from ..core.policy import Policy
from ..core.readiness import ReadinessPage
from ..core.revocation import Ended
from ..core.rotation import KeyUsage, ResealReport

__all__ = [
    "Accounts",
    "Caller",
    "Imports",
    "Keys",
    "LoginSettings",
    "Logins",
    "Parts",
    "Policies",
    "PolicyRecord",
    "Readiness",
    "SessionGenerations",
    "StaleClients",
    "Webmail",
]


class Caller(NamedTuple):
    """Who sent the request and what twostepd holds for them across requests."""

    peer: Peer
    continuations: Continuations
    rights: frozenset[Right] = frozenset()


class Logins(Protocol):
    """The verify right's part: decide a login, look a user up."""

    def authenticate(
        self,
        username: str,
        attempt: Attempt,
        *,
        service: str,
        remote: str = "",
        proof: PasswordProof | None = None,
    ) -> Decision: ...

    def lookup(self, username: str) -> tuple[str, Mapping[str, str]] | None: ...


class LoginSettings(Protocol):
    """The configuration a login's handler reads: which services log in as mail."""

    @property
    def mail_services(self) -> Collection[str]: ...


class SessionGenerations(Protocol):
    """What a portal session proof is bound to, per account (``PortalSessions``)."""

    def session_generation(self, username: str) -> str | None: ...


class Accounts(SessionGenerations, Protocol):
    """One account's state and the changes to it, admin's and the user's own."""

    def status(self, username: str) -> AccountStatus: ...

    def record_sign_out(self, username: str, *, actor: str | None = None) -> None: ...

    def enroll_begin(
        self,
        username: str,
        password: str,
        *,
        code: str | None = None,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> EnrollmentStart: ...

    def enroll_confirm(
        self,
        username: str,
        code: str,
        *,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> list[str]: ...

    def regenerate_backup_codes(self, username: str, *, actor: str | None = None) -> list[str]: ...

    def add_passcode(
        self,
        username: str,
        label: str,
        *,
        services: Collection[str] = (),
        lifetime: int | None = None,
        actor: str | None = None,
    ) -> NewPasscode: ...

    def revoke_passcode(self, username: str, label: str, *, actor: str | None = None) -> Ended: ...

    def revoke_all_passcodes(self, username: str, *, actor: str | None = None) -> Ended: ...

    def end_mail_password(self, username: str, *, actor: str | None = None) -> Ended: ...

    def revoke_device(self, username: str, device_id: str, *, actor: str | None = None) -> None: ...

    def revoke_other_devices(
        self, username: str, keep_id: str, *, actor: str | None = None
    ) -> None: ...

    def revoke_all_devices(self, username: str, *, actor: str | None = None) -> None: ...

    def unlock(self, username: str, *, actor: str | None = None) -> None: ...

    def reset(self, username: str, *, actor: str | None = None) -> Ended: ...

    def disable(
        self,
        username: str,
        *,
        password: str | None = None,
        code: str | None = None,
        admin: bool = False,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> Ended: ...

    def change_password(
        self,
        username: str,
        old: str,
        new: str,
        *,
        keep_device: str | None = None,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> Ended: ...


class PolicyRecord(Protocol):
    """A class-of-service entry as the policy handlers report it (``PolicyEntry``)."""

    @property
    def name(self) -> str: ...

    @property
    def dn(self) -> str: ...

    @property
    def settings(self) -> Mapping[str, bool | int]: ...

    @property
    def effective(self) -> Policy: ...

    @property
    def default(self) -> bool: ...


class Policies(Protocol):
    """The policy entries and which one an account is under."""

    def list_policies(self) -> Sequence[PolicyRecord]: ...

    def show_policy(self, name: str) -> PolicyRecord: ...

    def create_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyRecord: ...

    def set_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyRecord: ...

    def assign_policy(
        self, username: str, name: str | None, *, actor: str | None = None
    ) -> None: ...


class Keys(Protocol):
    """The sealing keys: which the directory needs, and re-sealing under the current."""

    def key_usage(self) -> KeyUsage: ...

    def reseal_keys(
        self, *, actor: str | None = None, after: str | None = None, limit: int | None = None
    ) -> ResealReport: ...


class Readiness(Protocol):
    """Every account, a page at a time, for ``twostep report readiness``."""

    def page(self, *, after: str | None = None, limit: int = 200) -> ReadinessPage: ...


class Imports(Protocol):
    """Bringing an authenticator over from another system."""

    def import_account(
        self,
        match_attribute: str,
        match_value: str,
        candidate: Candidate,
        *,
        apply: bool,
        replace: bool,
        actor: str | None = None,
    ) -> tuple[str, str | None, str]: ...


class Webmail(Protocol):
    """Webmail session credentials (``engine.webmail``)."""

    def start(
        self, username: str, *, bind: Sequence[str], idle: int, browser: str
    ) -> str | None: ...

    def check(self, username: str, token: str, browser: str) -> bool: ...

    def end(self, username: str, token: str, *, browser: str = "") -> bool: ...

    def revoke(self, username: str, session_id: str, *, actor: str | None = None) -> None: ...


class StaleClients(Protocol):
    """Mail programs still using an old credential (``engine.staleclients``)."""

    def dismiss(self, username: str, stale_id: str, *, actor: str | None = None) -> None: ...


class Parts(Protocol):
    """The engine as ``handle`` takes it: its parts, handed out one per operation."""

    @property
    def config(self) -> LoginSettings: ...

    @property
    def logins(self) -> Logins: ...

    @property
    def accounts(self) -> Accounts: ...

    @property
    def policies(self) -> Policies: ...

    @property
    def keys(self) -> Keys: ...

    @property
    def imports(self) -> Imports: ...

    @property
    def readiness(self) -> Readiness: ...

    @property
    def webmail(self) -> Webmail: ...

    @property
    def stale_clients(self) -> StaleClients: ...

    def stats(self) -> Mapping[str, object]:
        """``directory`` (operation counts), ``ldap_server`` (reads),
        ``ldap_write_server``, ``logins``."""
        ...
