"""Every account, enrolled or not, with what a readiness report needs of it, a page at a
time (``twostep report readiness``; the audit log is the command's to read).

The report must count the users who never turned two-step on, and they have no
two-step attribute to search for: so the listing is every entry the user filter
matches with ``{username}`` as ``*``, paged (RFC 2696) like the key rotation's, since a
site has more users than a server's size limit. Pages are in user-name order (the
name is read off each DN's first RDN when that is the user-name attribute, else the DN
stands for it), so ``after`` names where the next page starts and a page does not
depend on the order the directory returns entries in. Only the page's own entries are
read. A known cost, left as it is: every page lists the whole directory again (names
only) to find where it starts, so a report over N accounts lists N²/limit names; a
cursor the directory keeps would be cheaper but ties a page to one connection.

A page is bounded by what it weighs on the wire, not by a guess: each row is encoded as
the reply will be (``account_dict``, JSON as the daemon writes it) and a page stops
before its rows pass half of ``wire.MAX_REPLY``, since a label may be 64 emoji, some 770
bytes encoded, and a page over the limit is never sent. Two entries of one name stay on
one page whatever they weigh (the cursor could not tell them apart).

Each row carries every value of the user-name attribute (``names``): a login names the
user as typed, which may be any of them, and the report counts it for the account.

Nothing is written: reading an account here changes no note and takes no turn. An
entry that does not parse, or names a policy that does not exist, is a row marked
unreadable, not a failed page.
"""

from __future__ import annotations

import bisect
import json
import string
from collections.abc import Callable, Sequence
from typing import Protocol

from ..config import Config
from ..core.account import Attr, RawEntry, parse_account
from ..core.errors import CorruptEntry
from ..core.readiness import MAX_NAMES, Account, PasscodeUse, ReadinessPage, account_dict
from ..core.rotation import order_key
from ..wire import MAX_REPLY
from ._store import AccountStore

__all__ = ["PAGE_LIMIT", "Readiness"]

PAGE_LIMIT = 500
"""Accounts per page at most."""
_PAGE_BYTES = MAX_REPLY // 2
"""Encoded bytes of a page's rows at most (but for a first name alone over it): half the
reply limit leaves room for the reply around them and for a twin past the budget."""


def _encoded_size(account: Account) -> int:
    """Bytes of the row in the reply, encoded as the daemon encodes it, and its comma."""
    row = json.dumps(account_dict(account), separators=(",", ":"), ensure_ascii=True)
    return len(row) + 1


class _Listing(Protocol):
    """What this part asks of the directory: the paged listing, and entry reads."""

    def names_under(self, base: str, search_filter: str) -> list[str]: ...

    def read(self, dn: str, attributes: Sequence[str]) -> RawEntry | None: ...


def _first_rdn(dn: str) -> tuple[str, str] | None:
    """The attribute and value (RFC 4514 escapes undone) of a DN's first RDN; None when
    it has several values or cannot be read."""
    attribute, equals, rest = dn.partition("=")
    if not equals or not attribute.strip():
        return None
    value = bytearray()
    i = 0
    while i < len(rest):
        char = rest[i]
        if char == "\\":
            pair = rest[i + 1 : i + 3]
            if len(pair) == 2 and all(c in string.hexdigits for c in pair):
                value.append(int(pair, 16))
                i += 3
                continue
            if i + 1 >= len(rest):
                return None
            value += rest[i + 1].encode()
            i += 2
            continue
        if char == "+":
            return None
        if char == ",":
            break
        value += char.encode()
        i += 1
    try:
        return attribute.strip(), value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _policy_name(policy_dn: str | None) -> str | None:
    """A class of service by its name (``cn``), as ``policy assign`` names it."""
    if policy_dn is None:
        return None
    rdn = _first_rdn(policy_dn)
    return rdn[1] if rdn is not None and rdn[0].lower() == "cn" else policy_dn


class Readiness:
    def __init__(
        self,
        config: Config,
        directory: _Listing,
        store: AccountStore,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._directory = directory
        self._store = store
        self._clock = clock

    def _key(self, dn: str) -> str:
        """What a DN is ordered by: its user name when its RDN holds it, else itself."""
        rdn = _first_rdn(dn)
        attribute = self._config.users.username_attribute
        return rdn[1] if rdn is not None and rdn[0].lower() == attribute.lower() else dn

    def page(self, *, after: str | None = None, limit: int = 200) -> ReadinessPage:
        """At most ``limit`` accounts (1 to ``PAGE_LIMIT``) after the one named ``after``."""
        limit = max(1, min(limit, PAGE_LIMIT))
        now = int(self._clock())
        every = self._config.users.filter.replace("{username}", "*")
        listed = self._directory.names_under(self._config.users.base, every)
        keyed = sorted(((self._key(dn), dn) for dn in listed), key=lambda k: order_key(k[0]))
        keys = [order_key(key) for key, _ in keyed]
        i = 0 if after is None else bisect.bisect_right(keys, order_key(after))
        accounts: list[Account] = []
        size = 0
        while i < len(keyed) and len(accounts) < limit:
            # the entries of one name (a filter matching in two branches) go on one
            # page together or not at all: the cursor could not tell them apart
            end = i + 1
            while end < len(keyed) and keys[end] == keys[i]:
                end += 1
            group = [self._account(dn, key, now) for key, dn in keyed[i:end]]
            rows = [a for a in group if a is not None]
            group_size = sum(_encoded_size(a) for a in rows)
            if accounts and size + group_size > _PAGE_BYTES:
                break  # the next page starts with them
            accounts += rows
            size += group_size
            i = end
        following = keyed[i - 1][0] if 0 < i < len(keyed) else None
        return ReadinessPage(tuple(accounts), following)

    def _account(self, dn: str, key: str, now: int) -> Account | None:
        """The entry at ``dn`` as a row; None when it went meanwhile."""
        raw = self._directory.read(dn, self._store.attributes)
        if raw is None:
            return None
        attribute = self._config.users.username_attribute
        values = raw.get(attribute)
        names = tuple(v.decode("utf-8", "replace") for v in (values or ())[:MAX_NAMES])
        user = names[0] if names else key
        names = names or (user,)
        try:
            state = parse_account(raw, user, attribute)
            policy, _ = self._store.policy_of(state)
        except CorruptEntry as exc:
            named = raw.get(Attr.POLICY)
            policy_name = _policy_name(named[0].decode("utf-8", "replace")) if named else None
            return Account(user, policy_name, names, unreadable=True, why=str(exc))
        passcodes = []
        for passcode in sorted(state.live_passcodes(now), key=lambda p: p.created):
            note = state.usage_of(passcode.id)
            passcodes.append(
                PasscodeUse(
                    passcode.label,
                    passcode.created,
                    note.time if note else None,
                    note.address if note else None,
                )
            )
        return Account(
            state.username,
            _policy_name(state.policy_dn),
            (state.username, *(n for n in names if n != state.username))[:MAX_NAMES],
            enabled=state.enabled,
            enrolled=None,  # the directory keeps no date: the report reads the audit log's
            passcodes=tuple(passcodes),
            required=policy.required,
            mail_password=policy.mail_password,
            required_from=policy.required_from,
            mail_password_until=policy.mail_password_until,
        )
