"""The local findings of ``twostep check``: groups, socket members, the audit folder."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from pam_twostep.check_host import host_findings
from pam_twostep.config import Config, parse_config


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
    noted = [f for f in host_findings(config) if f.advice and "audit" not in f.what]
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
    [shared] = [f for f in host_findings(config) if str(secret) in f.what]
    assert not shared.ok and shared.advice == f"chmod 0600 {secret}"
    secret.chmod(0o600)
    assert not [f for f in host_findings(config) if str(secret) in f.what]
