"""Who is asking: the peer credentials of a socket client, and what they may ask.

The kernel tells twostepd the uid, gid and pid of the process at the other end of a
UNIX socket (SO_PEERCRED) and its supplementary groups (SO_PEERGROUPS); nothing the
client says about itself is believed. Three lists in the configuration decide:
``verify`` may ask whether a login is right, ``manage`` may also change any account
(the administrator's right), and ``self_service`` (the portal) may change an account only
for a user who has just proved their password (and code) to twostepd in a sign-in, with
the proof twostepd handed back then: a self-service peer never gets admin semantics, so
a compromised portal can act only for the users who sign in to it while it is. Root is
not special unless it is listed.

Rights go by number, never by name. The configuration names users and groups (that is
what an administrator writes); ``resolve`` turns them into uids and gids once, when the
daemon starts or reloads, and a peer is matched by its ids alone. Matching a peer by the
name NSS gives its uid would hand ``dovecot``'s rights to any account that NSS also
serves under that name (a directory user called ``dovecot`` with a uid of its own), and
would make every connection wait for NSS, which may be LDAP or sssd, before it is even
known to be wanted. The peer's name is looked up only to show it in logs and audit
events.
"""

from __future__ import annotations

import errno
import grp
import pwd
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from .config import AccessList, DaemonConfig

__all__ = ["Grant", "Peer", "Right", "Rules", "peer_of", "resolve", "rights_of", "user_name"]

_CACHE_SECONDS = 60.0
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
"""Linux 4.13+; 59 in asm-generic/socket.h (x86, arm, arm64, riscv, ppc, s390, mips)."""
_PEERGROUPS_BYTES = 1024
"""What Python's getsockopt can return at most: 256 groups. A peer in more gets only its
primary group considered (fail closed: a right given by a later group is not granted)."""


class Right(Enum):
    VERIFY = "verify"
    MANAGE = "manage"
    SELF_SERVICE = "self-service"
    """Change an account only with a sign-in proof for it (handlers' portal sessions)."""


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    user: str
    """The user name (for logs and audit only), or ``#<uid>`` for a uid without one."""
    groups: frozenset[int]
    """Supplementary group ids as the kernel reported them at connect time."""

    def __str__(self) -> str:
        return f"{self.user}(uid={self.uid},pid={self.pid})"


@dataclass(frozen=True)
class Grant:
    """The uids and gids one right is given to; a peer's primary or supplementary group
    counts, as the kernel reported it."""

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    def admits(self, peer: Peer) -> bool:
        return (
            peer.uid in self.uids or peer.gid in self.gids or not self.gids.isdisjoint(peer.groups)
        )


@dataclass(frozen=True)
class Rules:
    """``daemon.verify``, ``daemon.manage`` and ``daemon.self_service`` as ids, resolved
    once."""

    verify: Grant = Grant()
    manage: Grant = Grant()
    unknown: tuple[str, ...] = ()
    """Configured names with no account or group (``daemon.verify.users: postfix``):
    they grant nothing until they exist and the daemon reloads."""
    names: Mapping[int, str] = field(default_factory=dict, compare=False)
    """uid -> the name it was listed under, so listed users are named without NSS."""
    self_service: Grant = Grant()

    def name_of(self, uid: int) -> str | None:
        return self.names.get(uid)

    def describe(self) -> str:
        """For the log at start and reload: which ids each right went to."""
        return "; ".join(
            f"{name}: uids {_ids(grant.uids)}, gids {_ids(grant.gids)}"
            for name, grant in (
                ("verify", self.verify),
                ("manage", self.manage),
                ("self_service", self.self_service),
            )
        )


def _ids(values: Iterable[int]) -> str:
    return ",".join(map(str, sorted(values))) or "none"


def _resolve_list(
    allowed: AccessList, where: str, unknown: list[str], names: dict[int, str]
) -> Grant:
    uids, gids = set(), set()
    for name in sorted(allowed.users):
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            unknown.append(f"{where}.users: {name}")
            continue
        uids.add(uid)
        names.setdefault(uid, name)
    for name in sorted(allowed.groups):
        try:
            gids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            unknown.append(f"{where}.groups: {name}")
    return Grant(frozenset(uids), frozenset(gids))


def resolve(config: DaemonConfig) -> Rules:
    """The configured names as ids, looked up now (at start and on SIGHUP, never per
    connection). A name that does not resolve grants nothing: fail closed."""
    unknown: list[str] = []
    names: dict[int, str] = {}
    verify = _resolve_list(config.verify, "daemon.verify", unknown, names)
    manage = _resolve_list(config.manage, "daemon.manage", unknown, names)
    self_service = _resolve_list(config.self_service, "daemon.self_service", unknown, names)
    return Rules(verify, manage, tuple(unknown), names, self_service)


def rights_of(peer: Peer, rules: Rules) -> frozenset[Right]:
    """Each list's right, and ``verify`` with either of the others (changing an account
    starts from a sign-in). A peer in several lists has the union."""
    rights: set[Right] = set()
    if rules.manage.admits(peer):
        rights |= {Right.VERIFY, Right.MANAGE}
    if rules.self_service.admits(peer):
        rights |= {Right.VERIFY, Right.SELF_SERVICE}
    if rules.verify.admits(peer):
        rights.add(Right.VERIFY)
    return frozenset(rights)


_names: dict[int, tuple[float, str]] = {}
_names_lock = threading.Lock()


def user_name(uid: int) -> str:
    """The name of a uid for logs and audit, cached: NSS may be slow (LDAP, sssd)."""
    now = time.monotonic()
    with _names_lock:
        cached = _names.get(uid)
    if cached is not None and now - cached[0] < _CACHE_SECONDS:
        return cached[1]
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"#{uid}"
    with _names_lock:
        _names[uid] = (now, name)
    return name


def _supplementary_groups(sock: socket.socket) -> frozenset[int]:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, _PEERGROUPS_BYTES)
    except OSError as exc:
        if exc.errno in (errno.ERANGE, errno.ENOPROTOOPT, errno.EINVAL):
            return frozenset()  # too many groups, or an old kernel: the primary gid only
        raise
    count = len(raw) // 4
    return frozenset(struct.unpack(f"{count}I", raw[: count * 4]))


def peer_of(sock: socket.socket, *, named: bool = True) -> Peer:
    """The credentials of the process at the other end of a connected UNIX socket.

    With ``named=False`` no NSS lookup is made (the user shows as ``#<uid>``): that is
    what the daemon uses to decide at accept, before it knows the peer is wanted.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    pid, uid, gid = struct.unpack("iII", raw)
    groups = _supplementary_groups(sock)
    user = user_name(uid) if named else f"#{uid}"
    return Peer(pid=pid, uid=uid, gid=gid, user=user, groups=groups)
