"""The engine: read an account, decide, write the changes, audit. The only place they meet.

Everything that authenticates or manages (the daemon's request handlers, tests) goes
through an ``Engine``, so every path applies the same decision, the same directory
writes and the same audit event. Time and randomness are injected: production passes
``time.time`` and ``secrets.token_bytes``, tests pass their own.

``Engine`` builds its parts over one account store and one audited-change runner and
hands them out by concern, so a caller can hold only the view it needs (a verify-only
handler the ``logins``):

========================  =========================================================
``engine.logins``         ``Authenticator``: authenticate, lookup
``engine.accounts``       ``AccountManager``: status, enrollment, codes, passcodes,
                          devices, unlock, reset, disable, change_password
``engine.policies``       ``PolicyAdmin``: list, show, create, set, assign
``engine.keys``           ``KeyRotation``: key_usage, reseal_keys
``engine.imports``        ``Importer``: import_account
``engine.webmail``        ``WebmailSessions``: start, check, end, revoke
``engine.stale_clients``  ``StaleClients``: dismiss (and what logins record)
``engine.readiness``      ``Readiness``: every account, a page at a time, for a report
========================  =========================================================

The methods on ``Engine`` itself are thin delegates, kept so that callers written
against the single class go on working while they move to the parts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Mapping

from ..audit import AuditSink
from ..config import Config
from ..continuation import PasswordProof
from ..core import enrollment, management, rotation
from ..core.candidate import Candidate
from ..core.codes import Random
from ..core.decision import Attempt, Decision
from ..core.keyring import Keyring
from ..core.readiness import ReadinessPage
from ..core.revocation import Ended
from ..directory import Directory
from ._audited import Auditor
from ._inputs import check_username
from ._ports import SessionEnder, StaleNotifier
from ._store import AccountStore, PolicyCache
from .accounts import AccountManager
from .imports import Importer
from .keys import KeyRotation
from .logins import Authenticator
from .policies import PolicyAdmin, PolicyEntry
from .readiness import Readiness
from .revocations import Revoker
from .staleclients import Later, StaleClients
from .webmail import WebmailSessions

__all__ = [
    "AccountManager",
    "Authenticator",
    "Engine",
    "Importer",
    "KeyRotation",
    "PolicyAdmin",
    "PolicyEntry",
    "StaleClients",
    "WebmailSessions",
    "check_username",
]


class Engine:
    def __init__(
        self,
        config: Config,
        directory: Directory,
        keyring: Keyring,
        audit: AuditSink,
        *,
        clock: Callable[[], float] = time.time,
        random: Random = secrets.token_bytes,
        sessions: SessionEnder | None = None,
        notices: StaleNotifier | None = None,
        later: Later | None = None,
    ) -> None:
        """``sessions``: the mail servers whose open sessions a revocation ends
        (``mailsessions``); None: a revocation reaches the next login only.
        ``notices``: who tells owners of stale clients (``stalenotice``); None: nobody.
        ``later``: runs bookkeeping off the request path (``background``); None: at once."""
        self.config = config
        self.directory = directory
        self._keys = keyring
        cache = PolicyCache(directory, clock)
        store = AccountStore(config, directory, cache)
        auditor = Auditor(store, audit, clock)
        revoker = Revoker(store, sessions, clock, by_address=config.mail_sessions.by_address)
        self.stale_clients = StaleClients(
            store,
            auditor,
            keyring,
            notices,
            clock=clock,
            random=random,
            later=later,
        )
        self.logins = Authenticator(
            config,
            directory,
            store,
            auditor,
            keyring,
            revoker,
            self.stale_clients,
            clock=clock,
            random=random,
        )
        self.accounts = AccountManager(
            config,
            directory,
            store,
            auditor,
            self.logins,
            keyring,
            revoker,
            clock=clock,
            random=random,
        )
        self.policies = PolicyAdmin(config, directory, cache, auditor)
        self.keys = KeyRotation(store, auditor, keyring, random=random)
        self.imports = Importer(
            config, directory, store, auditor, self.policies, keyring, random=random
        )
        self.webmail = WebmailSessions(store, auditor, revoker, clock=clock, random=random)
        self.readiness = Readiness(config, directory, store, clock=clock)

    @property
    def login_count(self) -> int:
        """Logins decided since start (for the daemon's stats)."""
        return self.logins.login_count

    def stats(self) -> dict[str, object]:
        """What the daemon's ``stats`` reports of the engine and its directory."""
        return {
            "directory": self.directory.counts(),
            "ldap_server": self.directory.server_in_use,
            "ldap_write_server": self.directory.write_server,
            "logins": self.logins.login_count,
        }

    # -- logins -----------------------------------------------------------------------

    def authenticate(
        self,
        username: str,
        attempt: Attempt,
        *,
        service: str,
        remote: str = "",
        proof: PasswordProof | None = None,
    ) -> Decision:
        return self.logins.authenticate(
            username, attempt, service=service, remote=remote, proof=proof
        )

    def lookup(self, username: str) -> tuple[str, Mapping[str, str]] | None:
        return self.logins.lookup(username)

    # -- accounts ---------------------------------------------------------------------

    def status(self, username: str) -> management.AccountStatus:
        return self.accounts.status(username)

    def session_generation(self, username: str) -> str | None:
        return self.accounts.session_generation(username)

    def record_sign_out(self, username: str, *, actor: str | None = None) -> None:
        self.accounts.record_sign_out(username, actor=actor)

    def enroll_begin(
        self,
        username: str,
        password: str,
        *,
        code: str | None = None,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> enrollment.EnrollmentStart:
        return self.accounts.enroll_begin(
            username, password, code=code, actor=actor, service=service, remote=remote
        )

    def enroll_confirm(
        self,
        username: str,
        code: str,
        *,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> list[str]:
        return self.accounts.enroll_confirm(
            username, code, actor=actor, service=service, remote=remote
        )

    def regenerate_backup_codes(self, username: str, *, actor: str | None = None) -> list[str]:
        return self.accounts.regenerate_backup_codes(username, actor=actor)

    def add_passcode(
        self,
        username: str,
        label: str,
        *,
        services: Collection[str] = (),
        lifetime: int | None = None,
        actor: str | None = None,
    ) -> management.NewPasscode:
        return self.accounts.add_passcode(
            username, label, services=services, lifetime=lifetime, actor=actor
        )

    def revoke_passcode(self, username: str, label: str, *, actor: str | None = None) -> Ended:
        return self.accounts.revoke_passcode(username, label, actor=actor)

    def revoke_all_passcodes(self, username: str, *, actor: str | None = None) -> Ended:
        return self.accounts.revoke_all_passcodes(username, actor=actor)

    def revoke_device(self, username: str, device_id: str, *, actor: str | None = None) -> None:
        self.accounts.revoke_device(username, device_id, actor=actor)

    def revoke_other_devices(
        self, username: str, keep_id: str, *, actor: str | None = None
    ) -> None:
        self.accounts.revoke_other_devices(username, keep_id, actor=actor)

    def revoke_all_devices(self, username: str, *, actor: str | None = None) -> None:
        self.accounts.revoke_all_devices(username, actor=actor)

    def unlock(self, username: str, *, actor: str | None = None) -> None:
        self.accounts.unlock(username, actor=actor)

    def end_mail_password(self, username: str, *, actor: str | None = None) -> Ended:
        return self.accounts.end_mail_password(username, actor=actor)

    def reset(self, username: str, *, actor: str | None = None) -> Ended:
        return self.accounts.reset(username, actor=actor)

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
    ) -> Ended:
        return self.accounts.disable(
            username,
            password=password,
            code=code,
            admin=admin,
            actor=actor,
            service=service,
            remote=remote,
        )

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
    ) -> Ended:
        return self.accounts.change_password(
            username,
            old,
            new,
            keep_device=keep_device,
            actor=actor,
            service=service,
            remote=remote,
        )

    # -- policies ---------------------------------------------------------------------

    def forget_policies(self) -> None:
        self.policies.forget_policies()

    def list_policies(self) -> list[PolicyEntry]:
        return self.policies.list_policies()

    def show_policy(self, name: str) -> PolicyEntry:
        return self.policies.show_policy(name)

    def create_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyEntry:
        return self.policies.create_policy(name, settings, actor=actor)

    def set_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyEntry:
        return self.policies.set_policy(name, settings, actor=actor)

    def assign_policy(self, username: str, name: str | None, *, actor: str | None = None) -> None:
        self.policies.assign_policy(username, name, actor=actor)

    # -- keys and imports -------------------------------------------------------------

    def key_usage(self) -> rotation.KeyUsage:
        return self.keys.key_usage()

    def reseal_keys(
        self, *, actor: str | None = None, after: str | None = None, limit: int | None = None
    ) -> rotation.ResealReport:
        return self.keys.reseal_keys(actor=actor, after=after, limit=limit)

    def readiness_page(self, *, after: str | None = None, limit: int = 200) -> ReadinessPage:
        return self.readiness.page(after=after, limit=limit)

    def import_account(
        self,
        match_attribute: str,
        match_value: str,
        candidate: Candidate,
        *,
        apply: bool,
        replace: bool,
        actor: str | None = None,
    ) -> tuple[str, str | None, str]:
        return self.imports.import_account(
            match_attribute, match_value, candidate, apply=apply, replace=replace, actor=actor
        )
