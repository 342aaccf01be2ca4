"""Key rotation, online: count what each key seals, and re-seal under the current one.

Accounts are re-sealed one by one, each as its own audited change, while logins go on:
a login or enrollment that writes the entry meanwhile wins, and the account is read
again.
"""

from __future__ import annotations

import logging
from collections import Counter

from ..core import rotation
from ..core.codes import Random
from ..core.errors import Conflict, CorruptEntry, KeyUnavailable, RefusalReason, Refused
from ..core.keyring import Keyring
from ._audited import Auditor, Subject
from ._store import AccountStore

__all__ = ["KeyRotation"]

log = logging.getLogger(__name__)


class _ChangedTooOften(Refused):
    """Lost the race three times: refused for now, reported, and the run goes on."""

    def __init__(self) -> None:
        super().__init__(
            RefusalReason.CONFLICT, "changed three times while being re-sealed; run it again"
        )


class KeyRotation:
    def __init__(
        self, store: AccountStore, auditor: Auditor, keys: Keyring, *, random: Random
    ) -> None:
        self._store = store
        self._auditor = auditor
        self._keys = keys
        self._random = random

    def key_usage(self) -> rotation.KeyUsage:
        """How many sealed values name each key, over every account (reads them all)."""
        values: Counter[str] = Counter()
        unreadable = []
        for dn in self._store.accounts():
            try:
                state = self._store.read_account(dn)
                if state is not None:
                    values.update(rotation.sealed_with(state, self._keys))
            except CorruptEntry:
                unreadable.append(dn)
        return rotation.KeyUsage(
            current=self._keys.current,
            loaded=tuple(sorted(self._keys.key_ids)),
            values=dict(values),
            unreadable=tuple(unreadable),
        )

    def reseal_keys(
        self, *, actor: str | None = None, after: str | None = None, limit: int | None = None
    ) -> rotation.ResealReport:
        """Re-seal every value not sealed with the current key; online, account by account.

        With ``limit``, one batch of the run (``rotation.batch``): the accounts after
        ``after``, at most ``limit`` of them; the report says where the next begins."""
        resealed = current = 0
        failed: list[tuple[str, str]] = []
        listed = self._store.accounts()
        chosen, done, following = rotation.batch(listed, after, limit)
        for dn in chosen:
            outcome = self._reseal_account(dn, actor)
            if outcome == "resealed":
                resealed += 1
            elif outcome == "current":
                current += 1
            else:
                failed.append((dn, outcome))
        return rotation.ResealReport(
            resealed,
            current,
            tuple(failed),
            accounts=len(listed),
            done=done,
            next=following,
            current=self._keys.current,
        )

    def _reseal_account(self, dn: str, actor: str | None) -> str:
        """Re-seal one account: "resealed", "current" (nothing to do, so no event), or why
        not.

        A value that cannot be opened is reported and the next account goes on; the
        directory failing stops the whole run (raised, after this account's event)."""

        def change(subject: Subject) -> str:
            for _ in range(3):  # a concurrent enrollment or reset wins; then read again
                try:
                    state = self._store.read_account(dn)
                    if state is None:
                        subject.changed = False
                        return "current"  # deleted meanwhile: nothing left to re-seal
                    subject.user = state.username
                    modify = rotation.reseal(state, self._keys, self._random)
                    if not modify:
                        subject.changed = False
                        return "current"
                    self._store.write(state, modify)
                except Conflict:
                    continue
                return "resealed"
            raise _ChangedTooOften()

        try:
            # the entry's name is known only once it is read: until then the event names it
            return self._auditor.run("key-reseal", dn, actor, change)
        except (CorruptEntry, KeyUnavailable) as exc:
            log.warning("%s: not re-sealed: %s", dn, exc)
            return str(exc)
        except _ChangedTooOften as exc:
            return str(exc)
