"""Peer credentials and the rights they carry: by uid and gid, never by name."""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import secrets
import socket
import struct
import subprocess
from typing import Any

import pytest

from pam_twostep.access import Grant, Peer, Right, Rules, peer_of, resolve, rights_of
from pam_twostep.config import AccessList, DaemonConfig

DOVECOT = pwd.getpwnam("dovecot")
MAIL = grp.getgrnam("mail")


def peer(user: str, uid: int, gid: int = 4000, *groups: int) -> Peer:
    return Peer(pid=1, uid=uid, gid=gid, user=user, groups=frozenset(groups))


RULES = Rules(
    verify=Grant(frozenset({DOVECOT.pw_uid}), frozenset({MAIL.gr_gid})),
    manage=Grant(frozenset({0}), frozenset({4100})),
)


def test_rights_go_by_id() -> None:
    assert rights_of(peer("root", 0, 0), RULES) == {Right.VERIFY, Right.MANAGE}
    assert rights_of(peer("alice", 1000, 1000, 4100), RULES) == {Right.VERIFY, Right.MANAGE}
    assert rights_of(peer("dovecot", DOVECOT.pw_uid), RULES) == {Right.VERIFY}
    assert rights_of(peer("postfix", 4001, MAIL.gr_gid), RULES) == {Right.VERIFY}  # primary
    assert rights_of(peer("x", 4001, 4001, 7, MAIL.gr_gid), RULES) == {Right.VERIFY}
    assert rights_of(peer("mallory", 1001, 100, 100, 27), RULES) == frozenset()


def test_self_service_is_not_manage() -> None:
    """Issue 14 M5: the portal's right verifies and serves its signed-in users, and is
    never the admin's; a peer in both lists has both."""
    rules = Rules(
        verify=RULES.verify,
        manage=Grant(frozenset({0})),
        self_service=Grant(frozenset({998}), frozenset({4200})),
    )
    portal = {Right.VERIFY, Right.SELF_SERVICE}
    assert rights_of(peer("twostep-portal", 998, 998), rules) == portal
    assert rights_of(peer("x", 4002, 4200), rules) == portal
    assert Right.MANAGE not in rights_of(peer("twostep-portal", 998, 998), rules)
    both = Rules(manage=Grant(frozenset({0})), self_service=Grant(frozenset({0})))
    assert rights_of(peer("root", 0, 0), both) == {Right.VERIFY, Right.MANAGE, Right.SELF_SERVICE}
    assert "self_service: uids 998" in rules.describe()


def test_the_portal_is_self_service_by_default() -> None:
    defaults = DaemonConfig()
    assert "twostep-portal" in defaults.self_service.users
    assert "twostep-portal" not in defaults.manage.users


def test_a_name_is_worth_nothing() -> None:
    """S1: an account NSS also serves as "dovecot" or "root" (a directory user with a uid
    of its own), or in a group of the same name as a listed one, gets no right."""
    assert rights_of(peer("dovecot", 5000), RULES) == frozenset()
    assert rights_of(peer("root", 5001), RULES) == frozenset()
    assert rights_of(peer("#105", DOVECOT.pw_uid), RULES) == {Right.VERIFY}


def test_resolve_turns_names_into_ids_once() -> None:
    config = DaemonConfig(
        verify=AccessList(frozenset({"dovecot", "no-such-user-x"}), frozenset({"mail"})),
        manage=AccessList(frozenset({"root"}), frozenset({"no-such-group-x"})),
        self_service=AccessList(frozenset({"no-such-portal-x"})),
    )
    rules = resolve(config)
    assert rules.verify == Grant(frozenset({DOVECOT.pw_uid}), frozenset({MAIL.gr_gid}))
    assert rules.manage == Grant(frozenset({0}), frozenset())
    assert rules.unknown == (
        "daemon.verify.users: no-such-user-x",
        "daemon.manage.groups: no-such-group-x",
        "daemon.self_service.users: no-such-portal-x",
    )
    assert rules.self_service == Grant()
    assert rules.name_of(DOVECOT.pw_uid) == "dovecot" and rules.name_of(5000) is None
    assert f"uids {DOVECOT.pw_uid}" in rules.describe() and "gids none" in rules.describe()
    # nothing configured resolves to nothing: no peer has a right (fail closed)
    empty = resolve(
        DaemonConfig(verify=AccessList(), manage=AccessList(), self_service=AccessList())
    )
    assert rights_of(peer("root", 0, 0), empty) == frozenset()


def test_deciding_needs_no_name_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """At accept nothing asks NSS (which may be LDAP, slow, or down)."""

    def no_nss(*args: Any) -> Any:
        raise AssertionError("NSS asked")

    for module, name in [
        (pwd, "getpwuid"),
        (pwd, "getpwnam"),
        (grp, "getgrgid"),
        (grp, "getgrnam"),
        (os, "getgrouplist"),
    ]:
        monkeypatch.setattr(module, name, no_nss)
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        me = peer_of(left, named=False)
    assert me.user == f"#{os.getuid()}"
    assert rights_of(me, RULES) == (
        frozenset({Right.VERIFY, Right.MANAGE}) if me.uid == 0 else frozenset()
    )


def test_peer_of_a_real_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        me = peer_of(left)
    assert (me.pid, me.uid, me.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert me.groups == frozenset(os.getgroups())
    assert me.user == pwd.getpwuid(os.getuid()).pw_name
    assert str(me).startswith(me.user)


def test_the_kernel_reports_a_peer_s_real_groups() -> None:
    """Supplementary groups come from the connecting process (SO_PEERGROUPS), not from
    what /etc/group says its user would have: a process started with other groups is
    judged by the groups it has."""
    name = f"twostep-access-{secrets.token_hex(6)}"  # abstract: no file permissions
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("\0" + name)
        listener.listen(1)
        listener.settimeout(10)
        code = (
            "import socket, sys; s = socket.socket(socket.AF_UNIX); "
            "s.connect('\\0' + sys.argv[1]); s.recv(1)"
        )
        child = subprocess.Popen(
            ["/usr/bin/python3", "-I", "-c", code, name],
            user=4242,
            group=4343,
            extra_groups=[MAIL.gr_gid, 4444],
        )
        try:
            conn, _ = listener.accept()
            with conn:
                seen = peer_of(conn)
                conn.send(b"x")
        finally:
            child.wait(10)
    assert (seen.uid, seen.gid, seen.pid) == (4242, 4343, child.pid)
    assert seen.groups == {MAIL.gr_gid, 4444}
    assert seen.user == "#4242"  # no such account: shown by number
    assert rights_of(seen, RULES) == {Right.VERIFY}  # through the supplementary mail group
    assert json.dumps(str(seen))  # printable for the log


def test_too_many_groups_fall_back_to_the_primary_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """More groups than getsockopt can return: only the primary gid counts (fail closed)."""

    class Crowded:
        def getsockopt(self, level: int, option: int, size: int) -> bytes:
            if option == socket.SO_PEERCRED:
                return struct.pack("iII", 7, 4242, 4343)
            raise OSError(errno.ERANGE, "Numerical result out of range")

    seen = peer_of(Crowded(), named=False)  # type: ignore[arg-type]
    assert (seen.uid, seen.gid, seen.groups) == (4242, 4343, frozenset())
