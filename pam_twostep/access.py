"""Who is asking: the peer credentials of a socket client, and what they may ask.

The kernel tells twostepd the uid, gid and pid of the process at the other end of a
UNIX socket (SO_PEERCRED); nothing the client says about itself is believed. Two lists
in the configuration decide: ``verify`` may ask whether a login is right, ``manage`` may
also change accounts. Root is not special unless it is listed.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
import threading
import time
from dataclasses import dataclass
from enum import Enum

from .config import AccessList, DaemonConfig

__all__ = ["Peer", "Right", "peer_of", "rights_of"]

_CACHE_SECONDS = 60.0


class Right(Enum):
    VERIFY = "verify"
    MANAGE = "manage"


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    user: str
    """The user name, or ``#<uid>`` for a uid without one."""
    groups: frozenset[str]

    def __str__(self) -> str:
        return f"{self.user}(uid={self.uid},pid={self.pid})"


_cache: dict[tuple[int, int], tuple[float, str, frozenset[str]]] = {}
_cache_lock = threading.Lock()


def _names(uid: int, gid: int) -> tuple[str, frozenset[str]]:
    """User and group names for a uid, cached: NSS may be slow (LDAP, sssd)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get((uid, gid))
    if cached is not None and now - cached[0] < _CACHE_SECONDS:
        return cached[1], cached[2]
    try:
        user = pwd.getpwuid(uid).pw_name
        gids = os.getgrouplist(user, gid)
    except KeyError:
        user, gids = f"#{uid}", [gid]
    groups = set()
    for group_id in gids:
        try:
            groups.add(grp.getgrgid(group_id).gr_name)
        except KeyError:
            groups.add(f"#{group_id}")
    result = frozenset(groups)
    with _cache_lock:
        _cache[(uid, gid)] = (now, user, result)
    return user, result


def peer_of(sock: socket.socket) -> Peer:
    """The credentials of the process at the other end of a connected UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    user, groups = _names(uid, gid)
    return Peer(pid=pid, uid=uid, gid=gid, user=user, groups=groups)


def _listed(peer: Peer, allowed: AccessList) -> bool:
    return peer.user in allowed.users or bool(peer.groups & allowed.groups)


def rights_of(peer: Peer, config: DaemonConfig) -> frozenset[Right]:
    if _listed(peer, config.manage):
        return frozenset({Right.VERIFY, Right.MANAGE})
    if _listed(peer, config.verify):
        return frozenset({Right.VERIFY})
    return frozenset()
