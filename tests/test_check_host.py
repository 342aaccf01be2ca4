"""The local findings of ``twostep check``: groups, socket members, the audit folder."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import make_secrets_dir
from support.stack import world_readable_directory

from pam_twostep.check_host import host_findings
from pam_twostep.config import Config, parse_config
from pam_twostep.service_access import DAEMON_USER, account


def _config(tmp_path: Path, **daemon: Any) -> Config:
    return parse_config(
        {
            "ldap": {
                "uris": ["ldap://127.0.0.1:1/"],
                "bind_dn": "cn=twostep,dc=example,dc=org",
                "bind_password_file": str(tmp_path / "ldap.secret"),
            },
            "users": {"base": "ou=people,dc=example,dc=org"},
            "policy": {"base": "ou=p,dc=example,dc=org", "default": "cn=d,dc=example,dc=org"},
            "keys": {"current": "k1", "directory": str(tmp_path / "keys")},
            "totp": {"issuer": "Example"},
            "audit": {"syslog": False, "file": str(tmp_path / "log" / "audit.log")},
            "daemon": daemon,
        }
    )


def _group_without(user: str) -> str:
    """A group on this machine that ``user`` is not in."""
    gid = pwd.getpwnam(user).pw_gid
    for group in grp.getgrall():
        if group.gr_gid != gid and user not in group.gr_mem:
            return group.gr_name
    pytest.skip(f"every group on this machine has {user} in it")


def test_a_missing_socket_group_is_named_with_the_command_that_makes_it(tmp_path: Path) -> None:
    findings = host_findings(_config(tmp_path, socket_group="twostep-no-such-group"))
    failed = [f for f in findings if not f.ok]
    assert failed[0].what.startswith("daemon.socket_group twostep-no-such-group: no such group")
    assert failed[0].advice == "addgroup --system twostep-no-such-group"


def test_a_client_outside_the_socket_group_is_told_how_to_join(tmp_path: Path) -> None:
    group = _group_without("daemon")
    config = _config(
        tmp_path,
        socket_group=group,
        verify={"users": ["root", "daemon", "twostep-no-such-user"]},
    )
    noted = [
        f
        for f in host_findings(config)
        if f.advice and "audit" not in f.what and "service user" not in f.what
    ]
    # root needs no group; a user this host does not have (no Postfix here) is no problem;
    # and daemon's service may grant the group when it starts: a note, not a failure
    assert [(f.ok, f.advice) for f in noted] == [(True, f"adduser daemon {group}")]


def test_a_socket_anyone_may_open_needs_no_group(tmp_path: Path) -> None:
    config = _config(
        tmp_path, socket_group="root", socket_mode="0666", verify={"users": ["daemon"]}
    )
    assert next(f.what for f in host_findings(config)) == "socket mode 0666: anyone may connect"


def test_members_by_primary_group_count(tmp_path: Path) -> None:
    primary = grp.getgrgid(pwd.getpwnam("daemon").pw_gid).gr_name
    config = _config(tmp_path, socket_group=primary, verify={"users": ["daemon"]})
    findings = host_findings(config)
    assert findings[0].ok and "daemon" in findings[0].what


def test_the_audit_folder_must_exist(tmp_path: Path) -> None:
    config = _config(tmp_path, socket_group="root", verify={"users": ["root"]})
    [audit] = [f for f in host_findings(config) if "audit file" in f.what]
    assert not audit.ok and audit.advice.startswith("install -d -m 0750 -o twostep -g adm ")
    (tmp_path / "log").mkdir()
    [audit] = [f for f in host_findings(config) if "audit file" in f.what]
    assert audit.ok


def test_a_secret_its_group_may_read_is_refused_when_the_group_has_others(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "ldap.secret"
    secret.write_text("x")
    # root's group has members besides root on no machine we know of: use one that does
    group = next((g for g in grp.getgrall() if set(g.gr_mem) - {"root"}), None)
    if group is None:
        pytest.skip("no group with members here")
    os.chown(secret, 0, group.gr_gid)
    config = _config(tmp_path, socket_group="root", verify={"users": ["root"]})
    secret.chmod(0o640)
    [shared] = [f for f in host_findings(config) if "readable by the group" in f.what]
    assert not shared.ok and shared.advice == f"chmod 0600 {secret}"
    secret.chmod(0o600)
    assert not [f for f in host_findings(config) if "readable by the group" in f.what]


def _listening(path: Path, owner: int) -> socket.socket:
    """A socket at ``path`` owned by ``owner``, as a service running as that user
    leaves it."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    os.chown(path, owner, -1)
    return listener


def test_the_files_are_judged_as_the_user_twostepd_runs_as() -> None:
    """Its socket's owner while it runs: here nobody, who cannot read what root made."""
    base = world_readable_directory("twostep-host-")
    try:
        make_secrets_dir(base / "etc")
        config = _config(base / "etc", socket=str(base / "twostepd.sock"))
        with _listening(base / "twostepd.sock", pwd.getpwnam("nobody").pw_uid):
            failed = [f for f in host_findings(config) if "service user" in f.what]
        keys = base / "etc/keys"
        assert [(f.ok, f.what, f.advice) for f in failed] == [
            (
                False,
                f"ldap.bind_password_file {base}/etc/ldap.secret: the service user nobody"
                " cannot read it (owner root, mode 0600)",
                f"chown nobody:nogroup {base}/etc/ldap.secret",
            ),
            (
                False,
                f"keys.directory {keys}: the service user nobody cannot list it (owner root,"
                " mode 0700)",
                f"chown nobody:nogroup {keys}",
            ),
            (
                False,
                f"keys.directory: key file {keys}/k1.key: the service user nobody cannot"
                " read it (owner root, mode 0600)",
                f"chown nobody:nogroup {keys}/k1.key",
            ),
        ]
        # root's own socket: root reads anything
        (base / "twostepd.sock").unlink()
        with _listening(base / "twostepd.sock", 0):
            assert "twostepd's user root can read its files" in [
                f.what for f in host_findings(config) if f.ok
            ]
    finally:
        shutil.rmtree(base)


def test_without_a_running_twostepd_the_units_user_counts(tmp_path: Path) -> None:
    config = _config(tmp_path, socket=str(tmp_path / "none.sock"))
    if account(DAEMON_USER) is not None:
        pytest.skip(f"this host has a user {DAEMON_USER}")
    [missing] = [f for f in host_findings(config) if "service user" in f.what]
    assert (missing.ok, missing.what, missing.advice) == (
        False,
        f"the service user {DAEMON_USER} does not exist (twostepd runs as it)",
        "make install or the Debian package creates it",
    )
