"""Peer credentials and the rights they carry."""

from __future__ import annotations

import os
import socket

from pam_twostep.access import Peer, Right, peer_of, rights_of
from pam_twostep.config import AccessList, DaemonConfig


def peer(user: str, *groups: str) -> Peer:
    return Peer(pid=1, uid=1000, gid=1000, user=user, groups=frozenset(groups))


CONFIG = DaemonConfig(
    verify=AccessList(frozenset({"dovecot"}), frozenset({"mail"})),
    manage=AccessList(frozenset({"root"}), frozenset({"twostep-admins"})),
)


def test_rights() -> None:
    assert rights_of(peer("root"), CONFIG) == {Right.VERIFY, Right.MANAGE}
    assert rights_of(peer("alice", "twostep-admins"), CONFIG) == {Right.VERIFY, Right.MANAGE}
    assert rights_of(peer("dovecot"), CONFIG) == {Right.VERIFY}
    assert rights_of(peer("postfix", "mail"), CONFIG) == {Right.VERIFY}
    assert rights_of(peer("mallory", "users"), CONFIG) == frozenset()


def test_peer_of_a_real_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        me = peer_of(left)
    assert (me.pid, me.uid, me.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert me.user == "root" if os.getuid() == 0 else me.user
    assert str(me).startswith(me.user)
