"""Accounts as the engine reads and writes them, and the class-of-service entries cached.

Every part of the engine reads an account the same way (one search, the policy in force
resolved, the userdb fields taken) and writes it the same way (the account's object
class added on first use, the entry marked as written for the logins taking turns), so
these live once, here, below everything that decides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from ..config import Config
from ..core.account import ACCOUNT_CLASS, AccountState, Attr, RawEntry, parse_account
from ..core.changes import Modify
from ..core.errors import Conflict, CorruptEntry, NotFound, RefusalReason, TemporaryFailure
from ..core.policy import POLICY_ATTRIBUTES, Policy, overrides_from_ldap, resolve_policy
from ..turns import Turns
from ._inputs import check_username
from ._ports import DirectoryPort

__all__ = ["POLICY_TTL", "AccountStore", "Loaded", "PolicyCache"]

log = logging.getLogger(__name__)

POLICY_TTL = 30
"""Seconds a class-of-service entry is cached: policy edits apply within this delay."""


@dataclass(frozen=True)
class Loaded:
    state: AccountState
    policy: Policy
    policy_dn: str | None
    fields: Mapping[str, str]


class PolicyCache:
    """Class-of-service entries, read at most once per ``POLICY_TTL`` each: every login
    resolves one, and they change seldom."""

    def __init__(self, directory: DirectoryPort, clock: Callable[[], float]) -> None:
        self._directory = directory
        self._clock = clock
        self._entries: dict[str, tuple[float, dict[str, bool | int] | None]] = {}
        self._lock = threading.Lock()

    def entry(self, dn: str) -> dict[str, bool | int] | None:
        """The settings of the entry at ``dn``; None when there is no such entry."""
        now = self._clock()
        with self._lock:
            cached = self._entries.get(dn)
        if cached is not None and now - cached[0] < POLICY_TTL:
            return cached[1]
        raw = self._directory.read(dn, POLICY_ATTRIBUTES)
        values = overrides_from_ldap(raw.attributes) if raw is not None else None
        with self._lock:
            self._entries[dn] = (now, values)
        return values

    def forget(self) -> None:
        """Drop cached policy entries (after ``policy set``, or on reload)."""
        with self._lock:
            self._entries.clear()


class AccountStore:
    def __init__(self, config: Config, directory: DirectoryPort, policies: PolicyCache) -> None:
        self._config = config
        self._directory = directory
        self._policies = policies
        # "*" (all user attributes) keeps the request small: naming forty attributes costs
        # more to encode (ldap3 + pyasn1) than the few extra attributes cost to return.
        self.attributes = ["*", Attr.UUID]
        self.turns = Turns()

    def load(self, username: str) -> Loaded | None:
        raw = self._directory.find_account(username, self.attributes)
        if raw is None:
            return None
        state = parse_account(raw, username, self._config.users.username_attribute)
        policy, policy_dn = self.policy_of(state)
        return Loaded(state, policy, policy_dn, self.fields(raw))

    def require(self, username: str) -> Loaded:
        """The account, or ``NotFound`` for a name that is not one or names nobody."""
        name = check_username(username)
        loaded = self.load(name) if name is not None else None
        if loaded is None:
            raise NotFound(RefusalReason.UNKNOWN_USER, f"no such user: {str(username)[:64]!r}")
        return loaded

    def policy_of(self, state: AccountState) -> tuple[Policy, str | None]:
        """The policy in force for an account, and the entry it comes from."""
        policy_dn = state.policy_dn or self._config.policy.default
        cos = self._policies.entry(policy_dn) if policy_dn else {}
        if cos is None:
            raise CorruptEntry(
                Attr.POLICY, f"names a policy entry that does not exist: {policy_dn}"
            )
        return resolve_policy(self._config.policy.defaults, cos, state.overrides), policy_dn

    def fields(self, raw: RawEntry) -> dict[str, str]:
        """The configured userdb fields present on the entry (first value of each)."""
        fields = {}
        for name, attribute in self._config.userdb_fields.items():
            values = raw.get(attribute)
            if values:
                try:
                    fields[name] = values[0].decode("utf-8")
                except UnicodeDecodeError:
                    raise CorruptEntry(attribute, "not UTF-8") from None
        return fields

    def write(self, state: AccountState, modify: Modify) -> None:
        if not modify:
            return
        try:
            if not state.has_class:
                self._directory.add_values_if_missing(state.dn, Attr.OBJECT_CLASS, ACCOUNT_CLASS)
            self._directory.modify(state.dn, modify)
        finally:
            # even a failed write may have been applied: later reads must not trust theirs
            self.turns.wrote(state.dn)

    def bookkeeping(self, state: AccountState, modifies: Collection[Modify]) -> None:
        """Writes whose loss changes no outcome (pruning, counters): tried, never raised."""
        for modify in modifies:
            try:
                self.write(state, modify)
            except (Conflict, TemporaryFailure) as exc:
                log.debug("bookkeeping write for %s skipped: %s", state.username, exc)

    def accounts(self) -> list[str]:
        """The DN of every entry that holds two-step state, however many."""
        return self._directory.names_of_class(self._config.users.base, ACCOUNT_CLASS)

    def read_account(self, dn: str) -> AccountState | None:
        raw = self._directory.read(dn, self.attributes)
        if raw is None:
            return None
        attribute = self._config.users.username_attribute
        names = raw.get(attribute)
        return parse_account(raw, names[0].decode("utf-8", "replace") if names else dn, attribute)
