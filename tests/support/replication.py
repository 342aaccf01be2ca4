"""Two or more OpenLDAP providers replicating each other (multi-provider syncrepl).

Set up as an administrator would in cn=config: a server ID each, the syncprov overlay,
and one syncrepl consumer per other provider, refreshAndPersist, retrying every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from support.slapd import ADMIN_DN, ADMIN_PASSWORD, SUFFIX, USERS, Slapd

__all__ = ["consume_from", "providers", "replicate", "wait_until"]


def _consumer(rid: int, uri: str) -> str:
    return (
        f"olcSyncrepl: rid={rid:03d} provider={uri} bindmethod=simple"
        f' binddn="{ADMIN_DN}" credentials={ADMIN_PASSWORD} searchbase="{SUFFIX}"'
        ' type=refreshAndPersist retry="1 +" timeout=1 network-timeout=1\n'
    )


def consume_from(server: Slapd, rid: int, uri: str) -> None:
    """Point ``server``'s one consumer (of a pair) at ``uri``: somewhere nothing answers
    holds it behind, the other provider's URI lets it catch up again."""
    path = server.directory / "consumer.ldif"
    path.write_text(
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcSyncrepl\n"
        + _consumer(rid, uri)
    )
    server.ldapmodify(path)


def _config_ldif(number: int, others: Sequence[tuple[int, Slapd]]) -> str:
    consumers = "".join(_consumer(other_number, other.uri) for other_number, other in others)
    return f"""dn: cn=module{{0}},cn=config
changetype: modify
add: olcModuleLoad
olcModuleLoad: syncprov

dn: cn=config
changetype: modify
replace: olcServerID
olcServerID: {number}

dn: olcOverlay=syncprov,olcDatabase={{1}}mdb,cn=config
changetype: add
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: syncprov

dn: olcDatabase={{1}}mdb,cn=config
changetype: modify
add: olcDbIndex
olcDbIndex: entryCSN eq
olcDbIndex: entryUUID eq
-
add: olcSyncrepl
{consumers}-
add: olcMultiProvider
olcMultiProvider: TRUE
"""


def replicate(servers: Sequence[Slapd]) -> None:
    numbered = list(enumerate(servers, 1))
    for number, server in numbered:
        others = [(n, s) for n, s in numbered if s is not server]
        path = server.directory / "replication.ldif"
        path.write_text(_config_ldif(number, others))
        server.ldapmodify(path)


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("replication did not catch up")
        time.sleep(0.05)


def _same(a: Slapd, b: Slapd) -> bool:
    try:
        return a.snapshot() == b.snapshot()
    except Exception:  # noqa: BLE001 - a server still starting: not yet
        return False


@contextmanager
def providers(base: Path) -> Iterator[tuple[Slapd, Slapd]]:
    """Two providers: the first seeded as in the other tests, the second filled by syncrepl."""
    first = Slapd.create_for_tests(base / "provider1")
    second = Slapd.create(base / "provider2", names=first.names, users=USERS, seed=False)
    assert isinstance(second, Slapd)
    servers = (first, second)
    try:
        replicate(servers)
        wait_until(lambda: _same(*servers))
        yield servers
    finally:
        for server in servers:
            server.stop()
