"""Has a provider caught up? Its contextCSN against the one in use.

With syncprov, each provider keeps on its database's suffix entry one contextCSN per
server ID: the newest change from that server it holds (``20261202171500.123456Z#000000
#001#000000``: time, count, server ID, modifier; fixed width, so comparable as text). A
provider coming back has caught up when, for every server ID the provider in use has a
CSN for, it holds one as new. Read the one in use first: changes made after that read
are the replication delay, milliseconds, not an outage's backlog. Private to the
directory package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ldap3 import BASE, Connection

from ._answers import require_success

__all__ = ["caught_up", "context_csns", "suffix_of"]

_CSN = re.compile(rb"\d{14}(\.\d{1,6})?Z#[0-9a-f]{6}#([0-9a-f]{2,3})#[0-9a-f]{6}")
"""A CSN; the server ID has 2 hex digits in CSNs written before OpenLDAP 2.4."""


def _by_server(values: Iterable[bytes]) -> dict[bytes, bytes] | None:
    """Each server ID's CSN; None when a value is not a CSN (then nothing is compared)."""
    newest: dict[bytes, bytes] = {}
    for value in values:
        match = _CSN.fullmatch(value)
        if match is None:
            return None
        sid = match.group(2)
        newest[sid] = max(newest.get(sid, b""), value)
    return newest


def caught_up(returning: Iterable[bytes], in_use: Iterable[bytes]) -> bool | None:
    """Whether ``returning`` holds every change ``in_use`` holds; None when the one in use
    shows no CSN (no replication to compare: two names of one server, or contextCSN
    hidden from the service), then the caller decides on its timer alone."""
    theirs, ours = _by_server(returning), _by_server(in_use)
    if theirs is None or ours is None:
        return False
    if not ours:
        return None
    return all(theirs.get(sid, b"") >= csn for sid, csn in ours.items())


def _fold(dn: str) -> str:
    return dn.lower().replace(" ", "")


def suffix_of(conn: Connection, base: str) -> str:
    """The naming context (database suffix) that holds ``base``, from the root DSE; the
    base itself when none is named (then its contextCSN, if any, is not found)."""
    conn.search("", "(objectClass=*)", BASE, attributes=["namingContexts"])
    require_success(conn)
    contexts = [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for item in conn.response or ()
        if item.get("type") == "searchResEntry"
        for name, values in item.get("raw_attributes", {}).items()
        if name.lower() == "namingcontexts"
        for value in values
    ]
    folded = _fold(base)
    within = [c for c in contexts if folded == _fold(c) or folded.endswith("," + _fold(c))]
    return max(within, key=len) if within else base


def context_csns(conn: Connection, suffix: str) -> list[bytes]:
    """The contextCSN values on ``suffix`` (none without syncprov)."""
    conn.search(suffix, "(objectClass=*)", BASE, attributes=["contextCSN"])
    require_success(conn)
    values: list[bytes] = []
    for item in conn.response or ():
        if item.get("type") == "searchResEntry":
            for name, found in item.get("raw_attributes", {}).items():
                if name.lower() == "contextcsn":
                    values += [v if isinstance(v, bytes) else str(v).encode() for v in found]
    return values
