"""Authenticators brought over from another system, one account at a time.

The account is the one directory user the old system's name for it matches. A dry run
(``apply`` false) writes nothing and records nothing; an applied import records one
event: ``ok`` when the key was written, ``refused`` with the reason when the account
was left alone, ``error`` when it could not be decided. An account that already holds
the very key is no change and records none.
"""

from __future__ import annotations

from ..config import Config
from ..core.account import parse_account
from ..core.candidate import Candidate
from ..core.codes import Random
from ..core.errors import Conflict, CorruptEntry, RefusalReason, Refused
from ..core.import_plan import Outcome, plan_import
from ..core.keyring import Keyring
from ._audited import Auditor, Subject
from ._ports import DirectoryPort
from ._store import AccountStore
from .policies import PolicyAdmin

__all__ = ["Importer"]

Result = tuple[str, str | None, str]
"""(outcome, the account's user name, why)."""

_UNREADABLE = "its stored two-step values are unreadable ({}): reset it first"


class _Skipped(Refused):
    """An account the import leaves alone: what the caller is told, and the reason the
    event records."""

    def __init__(self, reason: RefusalReason, username: str | None, why: str) -> None:
        super().__init__(reason, why)
        self.username = username


class _Unreadable(CorruptEntry):
    """An account whose stored values do not parse: skipped, and recorded as an error."""

    def __init__(self, username: str, cause: CorruptEntry) -> None:
        super().__init__(cause.attribute, cause.problem)
        self.username = username


class Importer:
    def __init__(
        self,
        config: Config,
        directory: DirectoryPort,
        store: AccountStore,
        auditor: Auditor,
        policies: PolicyAdmin,
        keys: Keyring,
        *,
        random: Random,
    ) -> None:
        self._config = config
        self._directory = directory
        self._store = store
        self._auditor = auditor
        self._policies = policies
        self._keys = keys
        self._random = random

    def import_account(
        self,
        match_attribute: str,
        match_value: str,
        candidate: Candidate,
        *,
        apply: bool,
        replace: bool,
        actor: str | None = None,
    ) -> Result:
        """(outcome, the account's user name, why) for one authenticator brought over.

        The account is the one directory user whose ``match_attribute`` is
        ``match_value``. Without ``apply`` nothing is written and an import that would
        happen says ``would-import``. Everything for the account is one modify.
        """

        def change(subject: Subject) -> Result:
            return self._import(subject, match_attribute, match_value, candidate, apply, replace)

        try:
            if not apply:  # a dry run changes nothing, so it records nothing
                return change(Subject(match_value[:64], 0))
            return self._auditor.run(
                "import", match_value[:64], actor, change, label=candidate.source[-64:]
            )
        except _Skipped as skipped:
            return "skipped", skipped.username, str(skipped)
        except _Unreadable as exc:
            return "skipped", exc.username, _UNREADABLE.format(exc)

    def _import(
        self,
        subject: Subject,
        match_attribute: str,
        match_value: str,
        candidate: Candidate,
        apply: bool,
        replace: bool,
    ) -> Result:
        try:
            found = self._directory.find_by(
                match_attribute, match_value, self._store.attributes, limit=2
            )
        except ValueError:
            raise Refused(RefusalReason.INVALID_INPUT, "not an attribute name") from None
        wanted = f"{match_attribute}={match_value[:64]}"
        if not found:
            raise _Skipped(RefusalReason.UNKNOWN_USER, None, f"no directory user has {wanted}")
        if len(found) > 1:
            raise _Skipped(
                RefusalReason.INVALID_INPUT, None, f"more than one directory user has {wanted}"
            )
        attribute = self._config.users.username_attribute
        names = found[0].get(attribute)
        username = names[0].decode("utf-8", "replace") if names else match_value
        subject.user = username
        try:
            state = parse_account(found[0], username, attribute)
        except CorruptEntry as exc:
            raise _Unreadable(username, exc) from None
        try:
            policy, _ = self._store.policy_of(state)
            policy_dn = (
                self._policies.show_policy(candidate.policy).dn if candidate.policy else None
            )
            outcome, modify, why = plan_import(
                state,
                policy,
                candidate,
                keys=self._keys,
                random=self._random,
                replace=replace,
                policy_dn=policy_dn,
            )
        except CorruptEntry as exc:
            raise _Unreadable(state.username, exc) from None
        except Refused as exc:  # a policy that does not exist, or cannot
            raise _Skipped(exc.reason, state.username, str(exc)) from None
        if outcome is Outcome.SKIPPED:
            reason = (
                RefusalReason.NOT_AVAILABLE
                if not policy.available
                else RefusalReason.ALREADY_ENABLED
            )
            raise _Skipped(reason, state.username, why)
        if outcome is not Outcome.IMPORTED:
            subject.changed = False  # already holds this very key
            return outcome.value, state.username, why
        if not apply:
            return "would-import", state.username, ""
        try:
            self._store.write(state, modify)
        except Conflict:  # the secret's swap: the owner changed it since the read
            raise _Skipped(
                RefusalReason.CONFLICT,
                state.username,
                "its two-step settings changed while importing; run the import again",
            ) from None
        return outcome.value, state.username, ""
